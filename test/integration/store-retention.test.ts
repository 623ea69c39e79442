import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import type { TagDecision } from '../../src/domain/decision.js';
import { parseExperimentRequest } from '../../src/domain/request.js';
import { attemptDocument } from '../../src/store/fence.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import { objectKey } from '../../src/store/store.js';
import { EXIT_CODES } from '../../src/domain/exit-codes.js';
import { runCli } from '../helpers/cli.js';
import { recordRun } from '../helpers/records.js';
import { startStack, type TestStack } from '../helpers/stack.js';

// Retention as an operator runs it: `expctl store du` reads the fleet store, `expctl store gc` asks
// the orchestrator (a workflow on the control queue, its activity deletes), against a real
// Temporal server, a real catalog and a real filesystem store.
let stack: TestStack;
let storeDir: string;
let store: FilesystemStore;
let catalog: Catalog;

const DAY = 86_400_000;
const METRIC = { name: 'val_bpb', direction: 'minimize' } as const;
const env = () => ({ TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace, EXPCTL_STORE: storeDir });

/** A finished run in the catalog, ended `daysAgo` days ago, with the tag's decision. */
async function finishedRun(id: string, decision: 'keep' | 'discard', daysAgo: number, sequence: number) {
  const tagDecision: TagDecision = {
    experimentId: id,
    sequence,
    status: 'completed',
    decision,
    action: decision === 'keep' ? 'keep_commit' : 'git_reset',
    metric: 1,
    best: 1,
    delta: 0,
    nearMiss: false,
    consecutiveCrashes: 0,
    shouldAbort: false,
    rule: decision === 'keep' ? 'first_run' : 'not_improved',
    comparedWith: { group: 'g', experimentId: null, metric: null },
  };
  await recordRun(catalog, { id, status: 'completed', metrics: { val_bpb: 1 } }, tagDecision, METRIC);
  await catalog.sql.run('UPDATE experiments SET ended_at = ? WHERE id = ?', [
    new Date(Date.now() - daysAgo * DAY).toISOString(),
    id,
  ]);
}

/** A run still training: submitted and running, no end. */
async function liveRun(id: string) {
  const request = parseExperimentRequest({
    tag: 'gc',
    hypothesis: 'still going',
    category: 'other',
    repo: '/repo',
    commit: 'b'.repeat(40),
  });
  await catalog.apply({ experimentId: id, request, submittedAt: new Date().toISOString(), metric: METRIC });
  await catalog.apply({ experimentId: id, status: 'running' });
}

/** An object with the given content, last written `daysAgo` days ago. */
async function object(content: string, daysAgo: number): Promise<string> {
  const { sha256 } = await store.putBytes(Buffer.from(content));
  const when = new Date(Date.now() - daysAgo * DAY);
  await fs.utimes(path.join(storeDir, objectKey(sha256)), when, when);
  return sha256;
}

const logDocument = (chunks: string[]) => ({
  attempt: 1,
  host: 'h',
  chunks: chunks.map((sha256, i) => ({ offset: i, bytes: 1, sha256 })),
  complete: true,
});
const checkpointDocument = (files: string[]) => ({
  attempt: 1,
  syncedAt: new Date().toISOString(),
  trainingSeconds: 10,
  files: files.map((sha256, i) => ({ path: `ckpt-${i}.pt`, sha256, bytes: 1 })),
});

let objects: Record<string, string>;

beforeAll(async () => {
  storeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-retention-store-'));
  process.env.EXPCTL_STORE = storeDir;
  store = new FilesystemStore(storeDir);
  stack = await startStack({ name: 'retention', gpuWorker: false });
  catalog = await Catalog.open(stack.catalogPath);
  await finishedRun('exp-gc-discarded', 'discard', 60, 1);
  await finishedRun('exp-gc-kept', 'keep', 60, 2);
  await finishedRun('exp-gc-young', 'discard', 2, 3);
  await liveRun('exp-gc-live');
  objects = {
    discardedLog: await object('discarded log', 60),
    discardedCheckpoint: await object('discarded checkpoint', 60),
    keptCheckpoint: await object('kept checkpoint', 60),
    youngLog: await object('young log', 60),
    liveNewest: await object('live newest checkpoint', 40),
    liveOlder: await object('live older checkpoint', 40),
    orphanOld: await object('nothing names this', 90),
    orphanYoung: await object('just uploaded, not yet named', 0),
  };
  await store.putDocument(attemptDocument('exp-gc-discarded', 1, 'log'), logDocument([objects.discardedLog!]));
  await store.putDocument(
    attemptDocument('exp-gc-discarded', 1, 'checkpoint'),
    checkpointDocument([objects.discardedCheckpoint!]),
  );
  await store.putDocument(
    attemptDocument('exp-gc-kept', 1, 'checkpoint'),
    checkpointDocument([objects.keptCheckpoint!]),
  );
  await store.putDocument(attemptDocument('exp-gc-young', 1, 'log'), logDocument([objects.youngLog!]));
  // A live run's document names its newest checkpoint only: the one it replaced is unreferenced.
  await store.putDocument(attemptDocument('exp-gc-live', 1, 'checkpoint'), checkpointDocument([objects.liveNewest!]));
});
afterAll(async () => {
  await catalog?.close();
  await stack?.stop();
  await fs.rm(storeDir, { recursive: true, force: true });
});

const present = async () => {
  const found: string[] = [];
  for await (const entry of store.listObjects()) found.push(entry.sha256);
  return Object.entries(objects)
    .filter(([, sha256]) => found.includes(sha256))
    .map(([name]) => name)
    .sort();
};

describe('expctl store du and gc', () => {
  it('shows the usage by kind', async () => {
    const du = await runCli(env(), ['store', 'du', '--json']);
    expect(du.exitCode, du.stderr as string).toBe(0);
    const usage = JSON.parse(du.stdout as string);
    expect(usage).toMatchObject({ store: store.location, objects: 8, runs: 4, documents: 5 });
    expect(usage.by_kind.checkpoints.objects).toBe(3);
    expect(usage.by_kind.logs.objects).toBe(2);
    expect(usage.by_kind.unreferenced.objects).toBe(3);
    expect(usage.by_kind.logs.bytes).toBe(Buffer.byteLength('discarded log') + Buffer.byteLength('young log'));
  });

  it('says what it would remove with --dry-run and removes nothing', async () => {
    const before = await present();
    const gc = await runCli(env(), ['store', 'gc', '--dry-run', '--json']);
    expect(gc.exitCode, gc.stderr as string).toBe(0);
    const report = JSON.parse(gc.stdout as string);
    expect(report).toMatchObject({
      dry_run: true,
      runs_collected: ['exp-gc-discarded'],
      documents_deleted: 2,
      objects_deleted: 4,
    });
    expect(await present()).toEqual(before);
    expect(await store.listDocuments('runs/exp-gc-discarded/')).toHaveLength(2);
  });

  it("removes an old discarded run's objects and documents and unreferenced old objects, and keeps the rest", async () => {
    const gc = await runCli(env(), ['store', 'gc', '--older-than', '30d', '--json']);
    expect(gc.exitCode, gc.stderr as string).toBe(0);
    const report = JSON.parse(gc.stdout as string);
    expect(report).toMatchObject({
      dry_run: false,
      runs_collected: ['exp-gc-discarded'],
      runs_retained: 3,
      documents_deleted: 2,
      objects_deleted: 4,
      objects_kept: 4,
    });
    expect(await present()).toEqual(['keptCheckpoint', 'liveNewest', 'orphanYoung', 'youngLog']);
    expect(await store.listDocuments('runs/exp-gc-discarded/')).toEqual([]);
    expect((await store.listDocuments('runs/')).map((d) => d.name)).toEqual([
      'runs/exp-gc-kept/attempts/1/checkpoint',
      'runs/exp-gc-live/attempts/1/checkpoint',
      'runs/exp-gc-young/attempts/1/log',
    ]);
    // A shorter limit reaches the young run (ended 2 days ago) but never the kept or the live one.
    const shorter = await runCli(env(), ['store', 'gc', '--older-than', '1d']);
    expect(shorter.exitCode, shorter.stderr as string).toBe(0);
    expect(JSON.parse(shorter.stdout as string)).toMatchObject({
      runs_collected: ['exp-gc-young'],
      objects_deleted: 1,
    });
    expect(await present()).toEqual(['keptCheckpoint', 'liveNewest', 'orphanYoung']);
  });

  it('refuses a malformed --older-than before asking anything', async () => {
    const gc = await runCli(env(), ['store', 'gc', '--older-than', '30x']);
    expect(gc.exitCode).toBe(EXIT_CODES.validation_failed);
    expect(gc.stderr).toContain('--older-than: expected a duration such as 30s, 30m, 2h or 1d, got "30x"');
  });
});
