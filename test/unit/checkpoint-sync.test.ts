import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CheckpointDocument } from '../../src/domain/checkpoints.js';
import { CheckpointSync } from '../../src/gpu-worker/checkpoint-sync.js';
import { attemptDocument, claimFence, currentFence } from '../../src/store/fence.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The sync loop against a real filesystem store that breaks: its root replaced by a plain file (as
 * a lost mount would fail), then put back. Every failure is the store's own, not a stand-in's.
 */
let scratch: string;
let store: FilesystemStore;
let dir: string;
let log: string;
const token = { experimentId: 'exp-sync-1', attempt: 1, leaseId: 'lease-1' };

async function breakStore(): Promise<() => Promise<void>> {
  const away = `${store.root}.away`;
  await fs.rename(store.root, away);
  await fs.writeFile(store.root, 'not a directory\n');
  return async () => {
    await fs.rm(store.root);
    await fs.rename(away, store.root);
  };
}

const document = () => store.getDocument<CheckpointDocument>(attemptDocument(token.experimentId, 1, 'checkpoint'));
const logText = () => fs.readFile(log, 'utf8').catch(() => '');

function sync(intervalMs = 50): CheckpointSync {
  return new CheckpointSync({
    dir,
    store,
    token,
    log,
    intervalMs,
    quotaBytes: 1024,
    trainingSeconds: () => 42,
  });
}

beforeEach(async () => {
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-checkpoint-sync-'));
  store = new FilesystemStore(path.join(scratch, 'store'));
  await fs.mkdir(store.root);
  dir = path.join(scratch, 'checkpoints');
  await fs.mkdir(dir);
  log = path.join(scratch, 'train.log');
});
afterEach(() => fs.rm(scratch, { recursive: true, force: true }));

describe('the checkpoint sync loop', () => {
  it('goes on through a store outage, retrying with backoff, and syncs once the store answers again', async () => {
    const repair = await breakStore();
    const running = sync().claimResult({ unreachable: 'the store was away at the start' }).start();
    await fs.writeFile(path.join(dir, 'step-1.pt'), 'weights 1\n');
    await waitFor(async () => (await logText()).includes('retrying with backoff'));
    await repair();
    await waitFor(async () => (await document())?.files.length === 1, 20_000);
    const summary = await running.finish();
    expect(await document()).toMatchObject({
      attempt: 1,
      trainingSeconds: 42,
      files: [{ path: 'step-1.pt', bytes: 10 }],
      skipped: [],
    });
    // The claim the attempt could not make at its start was made before its first write.
    expect(await currentFence(store, token.experimentId)).toMatchObject({ attempt: 1, leaseId: 'lease-1' });
    expect(await logText()).toMatch(/checkpoint sync: the store .* failed \(.*\); retrying with backoff\n/);
    expect(await logText()).toContain('expctl: checkpoint sync: the store answers again');
    expect(summary).toEqual({
      checkpoint: { synced: { files: 1, bytes: 10, syncedAt: (await document())!.syncedAt }, skipped: [] },
      storeProblems: [],
    });
  });

  it('names what is missing when the store is still away at exit', async () => {
    await claimFence(store, token);
    const running = sync().claimResult({ claimed: true }).start();
    await fs.writeFile(path.join(dir, 'step-1.pt'), 'weights 1\n');
    await waitFor(async () => (await document())?.files.length === 1);
    const repair = await breakStore();
    await fs.writeFile(path.join(dir, 'step-2.pt'), 'weights 2\n');
    const summary = await running.finish();
    await repair();
    expect(summary.storeProblems).toHaveLength(1);
    expect(summary.storeProblems[0]).toMatch(
      /^store unreachable: the checkpoint of attempt 1 was not synced at exit \(.*\); the store holds the one synced \d{4}-/,
    );
    expect(summary.checkpoint?.synced?.files).toBe(1);
    expect((await document())!.files.map((file) => file.path)).toEqual(['step-1.pt']);
  });

  it('stops for good, and says so, once a later attempt holds the fence', async () => {
    await claimFence(store, token);
    const running = sync().claimResult({ claimed: true }).start();
    await fs.writeFile(path.join(dir, 'step-1.pt'), 'weights 1\n');
    await waitFor(async () => (await document())?.files.length === 1);
    await claimFence(store, { ...token, attempt: 2, leaseId: 'lease-2' });
    const before = await document();
    await fs.writeFile(path.join(dir, 'step-2.pt'), 'weights 2\n');
    const summary = await running.finish();
    expect(summary.checkpoint?.stopped).toMatch(/attempt 1 of exp-sync-1 \(lease lease-1\) is no longer current/);
    expect(await logText()).toMatch(/expctl: checkpoint sync stopped: attempt 1 .* holds its fence/);
    expect(await document()).toEqual(before);
  });

  it('never writes a document for a directory the script left empty, nor for work in progress', async () => {
    await claimFence(store, token);
    const running = sync().claimResult({ claimed: true }).start();
    await fs.writeFile(path.join(dir, '.step-1.pt.partial'), 'half\n');
    await fs.writeFile(path.join(dir, 'step-1.pt.tmp'), 'half\n');
    const summary = await running.finish();
    expect(summary).toEqual({ storeProblems: [] });
    expect(await store.listDocuments('runs/exp-sync-1/attempts/')).toEqual([]);
  });
});
