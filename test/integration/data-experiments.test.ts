import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addShard, fileSha256 } from '../../src/client/datasets.js';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { eventually } from '../helpers/wait.js';

// Experiments on dataset versions, on a real server: NAME@latest pinned at the start, waiting for
// data durably, timing out with a named state, reruns on the pinned version, lineage both ways.
// The data and the script are the example's: prepare.py writes the shards, train.py reads them.
const EXAMPLE = fileURLToPath(new URL('../../examples/ngram/', import.meta.url));
/** What train.py scores with {"order": 2} on its own data (examples/ngram/README.md). */
const ORDER_2_VAL_BPB = 2.140967;

let stack: TestStack;
let scratch: string;
let source: { repo: string; commit: string };
const catalog = () => stack.catalog;
const cli = (args: string[]) =>
  runCli(
    { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace, EXPCTL_CATALOG: stack.catalogPath },
    args,
    { cwd: source.repo },
  );
const run = (tag: string, extra: string[]) =>
  cli([
    'run',
    '--tag',
    tag,
    '--hypothesis',
    'a second-order context on the prepared data',
    '--category',
    'architecture',
    '--config',
    'config.json',
    '--time-budget',
    '60',
    ...extra,
    '--json',
    '--',
    'python3',
    'train.py',
  ]);
const resultOf = (out: { stdout: unknown }) => JSON.parse(out.stdout as string) as ExperimentResult;

/** The example's shards for one version, delivered in the given order (a shard may come twice). */
async function deliver(dataset: string, dir: string, order: number[]) {
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort();
  const outcomes = [];
  for (const index of order) {
    const file = path.join(dir, files[index]!);
    outcomes.push(
      await addShard(stack.client, {
        dataset,
        file,
        shardIndex: index,
        shardCount: files.length,
        declaredSha256: await fileSha256(file),
      }),
    );
  }
  return outcomes;
}
async function prepare(name: string, shards: number): Promise<string> {
  const dir = path.join(scratch, name);
  await execa('python3', [path.join(EXAMPLE, 'prepare.py'), dir, '--shards', String(shards)], { cwd: EXAMPLE });
  return dir;
}
const passed = (dataset: string, version: number) =>
  eventually(async () => (await catalog().datasetVersion(dataset, version))?.status === 'passed' || undefined, 120_000);

beforeAll(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-data-runs-'));
  stack = await startStack({ name: 'data-runs', cpuSlots: 2 });
  source = await makeRepo({ 'config.json': '{"order": 2}\n' }, path.join(EXAMPLE, 'train.py'));
});
afterAll(async () => {
  await stack?.stop();
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
  if (source) await fs.rm(source.repo, { recursive: true, force: true });
});

describe('experiments on dataset versions', () => {
  it('refuses a dataset nobody added; ends data_unavailable at once without --wait-for-data, and after its limit with it', async () => {
    // A dataset with no version at all is most likely a typo: a refusal (exit 2), not an infrastructure failure.
    const unknown = await run('nodata', ['--dataset', 'missing@latest']);
    expect(unknown.exitCode, unknown.stderr as string).toBe(2);
    expect(resultOf(unknown)).toMatchObject({ status: 'validation_failed', decision: null });
    expect(resultOf(unknown).reason).toMatch(/there is no dataset missing .*pass --wait-for-data/);

    // One whose first version is still open has no usable version yet.
    await deliver('partial', await prepare('partial', 2), [0]);
    const refused = await run('nodata', ['--dataset', 'partial@latest']);
    expect(refused.exitCode, refused.stderr as string).toBe(4);
    expect(resultOf(refused)).toMatchObject({ status: 'data_unavailable', decision: null });
    expect(resultOf(refused).reason).toMatch(/partial has no version that passed its gates yet.*--wait-for-data/);

    const waited = await run('nodata', ['--dataset', 'missing@latest', '--wait-for-data', '3']);
    expect(waited.exitCode).toBe(4);
    const result = resultOf(waited);
    expect(result.reason).toMatch(/after waiting 3 s \(--wait-for-data\)/);
    const record = (await catalog().get(result.experiment_id!))!;
    expect(record.status).toBe('data_unavailable');
    expect(record.events.map((e) => e.status)).toContain('waiting_for_data');
    // Not the agent's crash: neither counted nor kept.
    expect(record.decision).toBeNull();
  });

  it('waits for a version, pins it, trains on it; reruns stay on it once a newer one passes', async () => {
    const v1 = await prepare('v1', 4);
    const detached = await run('pinned', ['--dataset', 'ngram@latest', '--wait-for-data', '600', '--detach']);
    expect(detached.exitCode, detached.stderr as string).toBe(0);
    const id = (JSON.parse(detached.stdout as string) as { experiment_id: string }).experiment_id;
    const handle = stack.client.workflow.getHandle(id);
    await eventually(async () => (await handle.query(experimentStateQuery)).status === 'waiting_for_data' || undefined);

    // Out of order, one shard twice: one version of four shards.
    const outcomes = await deliver('ngram', v1, [3, 1, 3, 0, 2]);
    expect(outcomes.map((o) => o.outcome)).toEqual(['accepted', 'accepted', 'duplicate', 'accepted', 'accepted']);
    await passed('ngram', 1);

    const result = (await handle.result()) as ExperimentResult;
    expect(result).toMatchObject({ status: 'completed', metric: ORDER_2_VAL_BPB });
    const record = (await catalog().get(id))!;
    expect(record.datasetVersions).toEqual([
      expect.objectContaining({ ref: 'ngram@latest', dataset: 'ngram', version: 1, records: 251 }),
    ]);
    expect(record.datasetVersions[0]!.shards.map((s) => s.index)).toEqual([0, 1, 2, 3]);
    expect(record.events.map((e) => e.status)).toEqual(
      expect.arrayContaining(['waiting_for_data', 'validating', 'running', 'completed']),
    );
    // The script read the version laid out on the host, not data of its own.
    const log = await cli(['logs', id]);
    expect(log.stdout as string).toMatch(/data: 200000 training and 50000 validation symbols from .*ngram@1/);

    // Version 2: fewer, larger shards of the same symbols.
    await deliver('ngram', await prepare('v2', 3), [2, 0, 1]);
    await passed('ngram', 2);
    const latest = resultOf(await run('pinned', ['--dataset', 'ngram@latest']));
    expect((await catalog().get(latest.experiment_id!))!.datasetVersions[0]).toMatchObject({
      ref: 'ngram@latest',
      version: 2,
    });

    const rerun = await cli(['rerun', id, '--detach', '--json']);
    expect(rerun.exitCode, rerun.stderr as string).toBe(0);
    const change = JSON.parse(rerun.stdout as string) as { experiment_id: string; datasets: string[] };
    await stack.client.workflow.getHandle(change.experiment_id).result();
    expect(change.datasets).toEqual(['ngram@1']);
    expect((await catalog().get(change.experiment_id))!.datasetVersions[0]).toMatchObject({
      ref: 'ngram@1',
      version: 1,
    });

    // Lineage, both ways, from the catalog.
    const down = JSON.parse((await cli(['lineage', 'ngram@1', '--downstream', '--json'])).stdout as string);
    const readers = down.downstream.children.map((c: { ref: { id: string } }) => c.ref.id);
    expect(readers).toEqual([id, change.experiment_id]);
    const up = JSON.parse((await cli(['lineage', latest.experiment_id!, '--upstream', '--json'])).stdout as string);
    expect(up.upstream.children).toEqual([
      expect.objectContaining({
        relation: 'read (ngram@latest, pinned)',
        ref: { kind: 'dataset_version', dataset: 'ngram', version: 2 },
      }),
    ]);
    // Both directions unless one is asked for (JSON whenever stdout is not a terminal).
    const both = JSON.parse((await cli(['lineage', 'ngram@1'])).stdout as string);
    expect(both.upstream).toMatchObject({ detail: 'passed, 251 records', children: [] });
    expect(both.downstream.children).toHaveLength(2);
  });

  it('refuses a version that failed its gates before anything runs', async () => {
    const dir = await prepare('bad', 2);
    const file = path.join(dir, (await fs.readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort()[0]!);
    await addShard(stack.client, {
      dataset: 'bad',
      file,
      shardIndex: 0,
      shardCount: 2,
      declaredSha256: 'f'.repeat(64),
    });
    const second = path.join(dir, (await fs.readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort()[1]!);
    await addShard(stack.client, {
      dataset: 'bad',
      file: second,
      shardIndex: 1,
      shardCount: 2,
      declaredSha256: await fileSha256(second),
    });
    await eventually(async () => (await catalog().datasetVersion('bad', 1))?.status === 'failed' || undefined, 120_000);
    const refused = await run('bad', ['--dataset', 'bad@1', '--wait-for-data', '600']);
    expect(refused.exitCode).toBe(2);
    expect(resultOf(refused)).toMatchObject({ status: 'validation_failed' });
    expect(resultOf(refused).reason).toMatch(/bad@1 failed its gates and is not usable/);
  });
});
