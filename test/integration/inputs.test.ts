import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { ENCRYPTED_ENCODING } from '../../src/security/codec.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { runCli } from '../helpers/cli.js';
import { rawHistory } from '../helpers/history.js';
import { commitAll, makeRepo } from '../helpers/repo.js';
import { drain, startStack, type TestStack } from '../helpers/stack.js';
import type { GpuWorkerHandle } from '../../src/roots/gpu-worker.js';
import { Catalog } from '../../src/catalog/catalog.js';
import { createControlActivities } from '../../src/activities/control.js';
import { hostTaskQueue } from '../../src/shared/constants.js';

/** Prints every EXPCTL_* variable it received (and whether each path exists), then a metric. */
const SHOW_INPUTS = `import json, os
seen = {k: v for k, v in os.environ.items() if k.startswith("EXPCTL_")}
print("INPUTS " + json.dumps(seen, sort_keys=True), flush=True)
print("EXISTS " + json.dumps({k: os.path.exists(v) for k, v in seen.items() if k == "EXPCTL_CHECKPOINT" or k.startswith("EXPCTL_DATASET_")}, sort_keys=True))
print("---")
print("val_bpb:          1.000000")
`;

let stack: TestStack;
const workers = new Map<string, GpuWorkerHandle>();
let source: { repo: string; commit: string };

/** A file or directory under a host's root (datasets or checkpoints), as the worker of that host sees it. */
async function place(host: string, root: 'datasets' | 'checkpoints', relative: string, isDir: boolean) {
  const location = path.join(stack.workDir, host, root, relative);
  if (isDir) {
    await fs.mkdir(location, { recursive: true });
    await fs.writeFile(path.join(location, 'part-0.txt'), 'tokens\n');
  } else {
    await fs.mkdir(path.dirname(location), { recursive: true });
    await fs.writeFile(location, 'weights\n');
  }
  return fs.realpath(location);
}

function request(overrides: Partial<ExperimentRequestInput> & { tag: string }): ExperimentRequestInput {
  return {
    hypothesis: 'the script gets every checked input',
    category: 'hyperparams',
    command: ['python3', 'show_inputs.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 30,
    ...overrides,
  };
}

/** What the script printed on one of its lines (`INPUTS {...}`), from the run's recorded log tail. */
function printed(logTail: string | undefined, label: 'INPUTS' | 'EXISTS'): Record<string, unknown> {
  const line = (logTail ?? '').split('\n').find((l) => l.startsWith(`${label} `));
  expect(line, `the script's ${label} line in its log tail:\n${logTail}`).toBeDefined();
  return JSON.parse(line!.slice(label.length + 1)) as Record<string, unknown>;
}

beforeAll(async () => {
  // Two hosts with their own work directories (datasets and checkpoints roots): val-a registers
  // first, so validation picks it whenever it is online.
  stack = await startStack({ name: 'inputs', gpuWorker: false });
  for (const host of ['val-a', 'train-b']) workers.set(host, await stack.addGpuWorker({ host, cpuSlots: 1 }));
  source = await makeRepo({ 'show_inputs.py': SHOW_INPUTS, 'init.pt': 'committed weights\n' });
});
afterAll(async () => stack?.stop());

describe('every checked input reaches the script', () => {
  it('hands over the resolved checkpoint and each path dataset, as resolved on the host that trained', async () => {
    const where: Record<string, Record<string, string>> = {};
    for (const host of ['val-a', 'train-b'])
      where[host] = {
        checkpoint: await place(host, 'checkpoints', 'base/model.pt', false),
        train: await place(host, 'datasets', 'corpus/train', true),
        eval: await place(host, 'datasets', 'eval-set', true),
      };
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'inputs', checkpoint: 'base/model.pt', datasets: ['corpus/train', 'eval-set'] }),
    );
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'completed' });
    const trained = where[result.worker!]!;
    const state = await handle.query(experimentStateQuery);
    const inputs = printed(state.training?.logTail, 'INPUTS');
    expect(inputs).toMatchObject({
      EXPCTL_CHECKPOINT: trained.checkpoint,
      EXPCTL_DATASET_CORPUS_TRAIN: trained.train,
      EXPCTL_DATASET_EVAL_SET: trained.eval,
      EXPCTL_EXPERIMENT_ID: handle.workflowId,
      EXPCTL_TIME_BUDGET: '30',
    });
    expect(JSON.parse(inputs.EXPCTL_DATASETS as string)).toEqual({
      'corpus/train': trained.train,
      'eval-set': trained.eval,
    });
    // Two datasets: no single EXPCTL_DATASET_DIR.
    expect(inputs).not.toHaveProperty('EXPCTL_DATASET_DIR');
    expect(printed(state.training?.logTail, 'EXISTS')).toEqual({
      EXPCTL_CHECKPOINT: true,
      EXPCTL_DATASET_CORPUS_TRAIN: true,
      EXPCTL_DATASET_EVAL_SET: true,
    });
  });

  it('hands over a checkpoint committed in the tree as its path in the run worktree, and one dataset as EXPCTL_DATASET_DIR', async () => {
    for (const host of ['val-a', 'train-b']) await place(host, 'datasets', 'eval-set', true);
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'inputs', checkpoint: 'init.pt', datasets: ['eval-set'] }),
    );
    expect(await handle.result()).toMatchObject({ status: 'completed' });
    const state = await handle.query(experimentStateQuery);
    const inputs = printed(state.training?.logTail, 'INPUTS');
    expect(inputs.EXPCTL_CHECKPOINT).toMatch(new RegExp(`/runs/${handle.workflowId}/tree/init\\.pt$`));
    expect(inputs.EXPCTL_DATASET_DIR).toBe(inputs.EXPCTL_DATASET_EVAL_SET);
    expect(printed(state.training?.logTail, 'EXISTS')).toEqual({
      EXPCTL_CHECKPOINT: true,
      EXPCTL_DATASET_DIR: true,
      EXPCTL_DATASET_EVAL_SET: true,
    });
  });

  it('refuses two datasets that would share one variable, naming both', async () => {
    for (const host of ['val-a', 'train-b']) {
      await place(host, 'datasets', 'eval-set', true);
      await place(host, 'datasets', 'eval_set', true);
    }
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'inputs', datasets: ['eval-set', 'eval_set'] }),
    );
    const result = await handle.result();
    expect(result.status).toBe('validation_failed');
    expect(result.reason).toMatch(
      /datasets eval-set and eval_set would both be handed to the script as EXPCTL_DATASET_EVAL_SET/,
    );
  });
});

describe('validation where the run will train', () => {
  it('a path present on the validating host but not on the leased one ends validation_failed there, lease released, no crash', async () => {
    await place('val-a', 'datasets', 'only-on-a', true);
    await place('val-a', 'checkpoints', 'only-on-a.pt', false);
    // val-a stays online (validation picks it) but takes no lease: the run is leased on train-b.
    await drain(stack.client, 'val-a', true, 'the test trains elsewhere');
    try {
      for (const overrides of [{ datasets: ['only-on-a'] }, { checkpoint: 'only-on-a.pt' }]) {
        const { handle } = await submitExperiment(stack.client, request({ tag: 'elsewhere', ...overrides }));
        const result = await handle.result();
        const state = await handle.query(experimentStateQuery);
        expect(state.validation).toMatchObject({ ok: true, host: 'val-a' });
        expect(state.worker).toBe('train-b');
        expect(result).toMatchObject({ status: 'validation_failed', consecutive_crashes: 0, should_abort: false });
        expect(result.reason).toMatch(/^re-checked on train-b, the host leased to train it: /);
        expect(result.reason).toMatch(
          'datasets' in overrides
            ? /dataset only-on-a is not present on train-b/
            : /checkpoint only-on-a\.pt was not found in commit .* or under the checkpoints root of train-b/,
        );
        // Refused by the train step's own check on the leased host, before the training command
        // started (no training outcome), and the slot is free again.
        expect(state.timeline.map((entry) => entry.status)).toEqual([
          'submitted',
          'validating',
          'queued',
          'running',
          'validation_failed',
        ]);
        expect(state.training).toBeNull();
        const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
        expect(pool.slots.filter((slot) => slot.lease?.experimentId === handle.workflowId)).toEqual([]);
        expect(state.attempts).toBe(1);
      }
    } finally {
      await drain(stack.client, 'val-a', false, 'the test is done');
    }
  });
});

/** Every payload in a history event (search attributes and headers aside: they are not the workflow's data). */
function payloadsIn(value: unknown): Payload[] {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return [];
  const record = value as Record<string, unknown>;
  const metadata = record.metadata as Record<string, unknown> | undefined;
  if (metadata && typeof metadata === 'object' && metadata.encoding instanceof Uint8Array) return [record as Payload];
  return Object.entries(record).flatMap(([key, child]) =>
    key === 'searchAttributes' || key === 'header' ? [] : payloadsIn(child),
  );
}

describe('the whole patch, always', () => {
  it('a patch over 1 MiB comes back byte-identical through `expctl show ID --patch`, and the history holds only its reference', async () => {
    const marker = 'PATCH-TEXT-MARKER';
    const repo = await makeRepo({ 'show_inputs.py': SHOW_INPUTS });
    // 1.5 MiB of added lines, each unique, the marker on every one: any piece of the text would show.
    const lines = Array.from(
      { length: 24_000 },
      (_, i) => `${marker} ${String(i).padStart(6, '0')} ${'é€'.repeat(20)}`,
    );
    await fs.writeFile(path.join(repo.repo, 'big.txt'), `${lines.join('\n')}\n`);
    const commit = await commitAll(repo.repo, 'a large change');
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'patch', repo: repo.repo, commit, hypothesis: 'a large patch is kept whole' }),
    );
    expect(await handle.result()).toMatchObject({ status: 'completed' });
    const state = await handle.query(experimentStateQuery);
    const reference = state.validation!.patch!;
    expect(reference.bytes).toBeGreaterThan(1 << 20);
    // What the validating host wrote is the patch itself.
    const kept = await fs.readFile(
      path.join(stack.workDir, state.validation!.host, 'runs', handle.workflowId, 'commit.patch'),
    );
    expect(kept.length).toBe(reference.bytes);
    expect(crypto.createHash('sha256').update(kept).digest('hex')).toBe(reference.sha256);
    expect(kept.toString('utf8')).toContain(lines.at(-1));

    const cliEnv = { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace };
    // Beside the catalog file, and from a host without it (read through the orchestrator, page by page).
    for (const catalogFile of [stack.catalogPath, path.join(stack.workDir, 'no-catalog-here.sqlite')]) {
      const shown = await runCli({ ...cliEnv, EXPCTL_CATALOG: catalogFile }, ['show', handle.workflowId, '--patch'], {
        stripFinalNewline: false,
        encoding: 'buffer',
      });
      expect(shown.exitCode, String(shown.stderr)).toBe(0);
      expect(Buffer.compare(Buffer.from(shown.stdout as Uint8Array), kept), catalogFile).toBe(0);
    }
    const record = (await stack.catalog.get(handle.workflowId))!;
    expect(record).toMatchObject({ patch: null, patchSha256: reference.sha256, patchBytes: reference.bytes });
    // The validating host put it in the fleet store too: the history and the record name the object.
    expect(reference.uri).toBe(stack.store.objectUri(reference.sha256));
    expect(record.patchUri).toBe(reference.uri);
    expect(Buffer.compare(await stack.store.getBytes(reference.sha256), kept)).toBe(0);

    // The experiment's history, every payload decoded with the fleet's codec: the reference, never the text.
    const { events } = await rawHistory(stack.client, stack.namespace, handle.workflowId);
    const codec = stack.dataConverter.payloadCodecs![0]!;
    // Plain ones (the SDK's own markers) are read as they are.
    const decoded = await Promise.all(
      events.flatMap(payloadsIn).map(async (payload) => {
        const encrypted = Buffer.from(payload.metadata!.encoding!).toString('utf8') === ENCRYPTED_ENCODING;
        return Buffer.from((encrypted ? (await codec.decode([payload]))[0]! : payload).data ?? []);
      }),
    );
    expect(decoded.length).toBeGreaterThan(10);
    const all = Buffer.concat(decoded);
    expect(all.includes(reference.sha256), 'the patch is referenced by its sha256').toBe(true);
    expect(all.includes(reference.uri!), 'the patch is referenced by its store URI').toBe(true);
    expect(all.includes(marker), 'patch text in the experiment history').toBe(false);
    expect(all.includes('+++ b/big.txt'), 'patch text in the experiment history').toBe(false);
  });

  it('with its validating host gone, the patch comes from the fleet store: into the catalog, and to `expctl show --patch`', async () => {
    const repo = await makeRepo({ 'show_inputs.py': SHOW_INPUTS });
    await fs.writeFile(path.join(repo.repo, 'change.txt'), 'a change only the store will keep\n');
    const commit = await commitAll(repo.repo, 'a small change');
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'patch-gone', repo: repo.repo, commit, hypothesis: 'the patch outlives its host' }),
    );
    expect(await handle.result()).toMatchObject({ status: 'completed' });
    const { host, patch } = (await handle.query(experimentStateQuery)).validation!;
    const expected = await fs.readFile(path.join(stack.workDir, host, 'runs', handle.workflowId, 'commit.patch'));
    // The validating host goes for good, its disk with it.
    await workers.get(host)!.shutdown();
    await fs.rm(path.join(stack.workDir, host), { recursive: true, force: true });

    const writer = await Catalog.open(stack.catalogPath);
    try {
      // As if the catalog never got its copy: `show --patch` reads the store the record names.
      await writer.sql.run('DELETE FROM blobs WHERE sha256 = ?', [patch!.sha256]);
      const cliEnv = { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace };
      const shown = await runCli(
        { ...cliEnv, EXPCTL_CATALOG: stack.catalogPath },
        ['show', handle.workflowId, '--patch'],
        {
          stripFinalNewline: false,
          encoding: 'buffer',
        },
      );
      expect(shown.exitCode, String(shown.stderr)).toBe(0);
      expect(Buffer.compare(Buffer.from(shown.stdout as Uint8Array), expected)).toBe(0);

      // The orchestrator's copy comes from the store, without asking the host (no worker serves its queue).
      const control = createControlActivities({
        client: stack.client,
        catalog: writer,
        secretHashKey: Buffer.alloc(32),
        store: stack.store,
      });
      const started = Date.now();
      await control.storePatch({
        experimentId: handle.workflowId,
        hostQueue: hostTaskQueue(host),
        sha256: patch!.sha256,
        bytes: patch!.bytes,
        uri: patch!.uri!,
      });
      // A host read would wait out its queue's 30 s before failing.
      expect(Date.now() - started).toBeLessThan(20_000);
      const page = await writer.blobPage(patch!.sha256, 0, expected.length);
      expect(page).toMatchObject({ text: expected.toString('utf8'), bytes: expected.length, nextOffset: null });
    } finally {
      await writer.close();
    }
  });
});
