import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogShipper, type ShippedLogDocument } from '../../src/gpu-worker/log-shipping.js';
import { attemptDocument, claimFence, type FenceToken } from '../../src/store/fence.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import { StoreError, type FleetStore } from '../../src/store/store.js';
import { waitFor } from '../helpers/wait.js';

// The worker's log shipping against a real filesystem store: chunks while the run goes, the
// attempt's chunk list, secrets scrubbed across chunk boundaries, the fence, an unreachable store.
let dir: string;
let store: FilesystemStore;
let log: string;
const token: FenceToken = { experimentId: 'exp-ship', attempt: 1, leaseId: 'lease-1' };
const SECRET = 'hunter2-very-secret-value';

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'log-ship-'));
  store = new FilesystemStore(path.join(dir, 'store'));
  log = path.join(dir, 'train.log');
  await fs.writeFile(log, '');
});
afterEach(async () => fs.rm(dir, { recursive: true, force: true }));

const logDocument = (s: FleetStore = store, attempt = 1) =>
  s.getDocument<ShippedLogDocument>(attemptDocument(token.experimentId, attempt, 'log'));

/** The shipped log, chunk by chunk from the store (each verified by its hash). */
async function shippedText(document: ShippedLogDocument): Promise<string> {
  let expectedOffset = 0;
  const parts: Buffer[] = [];
  for (const chunk of document.chunks) {
    expect(chunk.offset).toBe(expectedOffset);
    const bytes = await store.getBytes(chunk.sha256);
    expect(bytes.length).toBe(chunk.bytes);
    parts.push(bytes);
    expectedOffset += chunk.bytes;
  }
  expect(expectedOffset).toBe(document.bytes);
  return Buffer.concat(parts).toString('utf8');
}

describe('log shipping', () => {
  it('ships the log in chunks while it grows and once more at the end, a secret split across chunks scrubbed', async () => {
    const shipper = createLogShipper({
      store,
      token,
      host: 'h1',
      logFile: log,
      secretValues: [SECRET],
      intervalMs: 50,
    });
    shipper.start();
    await fs.appendFile(log, 'step 1\nthe key is hunter2-very');
    await waitFor(async () => ((await logDocument())?.chunks.length ?? 0) >= 1, 10_000);
    const early = (await logDocument())!;
    expect(early.complete).toBe(false);
    expect(early.host).toBe('h1');
    // The end that could begin the secret is held back, not shipped.
    expect(await shippedText(early)).toBe('step 1\nthe key is ');
    await fs.appendFile(log, '-secret-value here\nstep 2\n');
    const { log: ref, storeProblems } = await shipper.finish();
    expect(storeProblems).toEqual([]);
    const final = (await logDocument())!;
    expect(final.complete).toBe(true);
    expect(final.chunks.length).toBeGreaterThanOrEqual(2);
    const text = await shippedText(final);
    expect(text).toBe('step 1\nthe key is [redacted] here\nstep 2\n');
    expect(text).not.toContain('hunter2');
    expect(ref).toEqual({
      document: 'runs/exp-ship/attempts/1/log',
      store: store.location,
      bytes: final.bytes,
      chunks: final.chunks.length,
      complete: true,
    });
  });

  it("ships only this attempt's part of a log an earlier attempt on the host wrote to", async () => {
    await fs.writeFile(log, 'attempt 1 line\n');
    const start = (await fs.stat(log)).size;
    await fs.appendFile(log, 'attempt 2 line\n');
    const shipper = createLogShipper({
      store,
      token: { ...token, attempt: 2, leaseId: 'lease-2' },
      host: 'h1',
      logFile: log,
      secretValues: [],
      startOffset: start,
    });
    await shipper.finish();
    expect(await shippedText((await logDocument(store, 2))!)).toBe('attempt 2 line\n');
  });

  it('stops shipping once a later attempt holds the fence, and says so in the log and the outcome', async () => {
    const shipper = createLogShipper({ store, token, host: 'h1', logFile: log, secretValues: [], intervalMs: 50 });
    shipper.start();
    await fs.appendFile(log, 'before the cut\n');
    await waitFor(async () => (await logDocument())?.bytes === 15, 10_000);
    await claimFence(store, { ...token, attempt: 2, leaseId: 'lease-2' });
    await fs.appendFile(log, 'after the successor claimed\n');
    const { log: ref, storeProblems } = await shipper.finish();
    expect(storeProblems).toHaveLength(1);
    expect(storeProblems[0]).toMatch(/^log shipping stopped, fenced: attempt 1 of exp-ship .* no longer current/);
    expect(ref?.complete).toBe(false);
    // Nothing after the successor's claim reached the store.
    const document = (await logDocument())!;
    expect(await shippedText(document)).toBe('before the cut\n');
    expect(document.complete).toBe(false);
    expect(await fs.readFile(log, 'utf8')).toContain('expctl: the log is no longer shipped to the fleet store');
  });

  it('retries an unreachable store with backoff and ships everything once it answers', async () => {
    let down = true;
    let refused = 0;
    const flaky: FleetStore = Object.create(store) as FleetStore;
    flaky.putBytes = async (bytes) => {
      if (down) {
        refused++;
        throw new StoreError('unreachable', 'the store did not answer');
      }
      return store.putBytes(bytes);
    };
    const shipper = createLogShipper({
      store: flaky,
      token,
      host: 'h1',
      logFile: log,
      secretValues: [],
      intervalMs: 20,
      maxBackoffMs: 200,
    });
    shipper.start();
    await fs.appendFile(log, 'while the store is down\n');
    await waitFor(async () => refused >= 3, 10_000);
    down = false;
    await waitFor(async () => (await logDocument())?.bytes === 24, 10_000);
    const { storeProblems } = await shipper.finish();
    expect(storeProblems).toEqual([]);
    expect(await shippedText((await logDocument())!)).toBe('while the store is down\n');
  });

  it('names what never reached a store that stayed unreachable', async () => {
    // Not a single read or write answers, from the first (the attempt's earlier document) on.
    const dead: FleetStore = Object.create(store) as FleetStore;
    const unreachable = async (): Promise<never> => {
      throw new StoreError('unreachable', 'the store did not answer');
    };
    dead.putBytes = unreachable;
    dead.getDocument = unreachable;
    dead.putDocument = unreachable;
    await fs.appendFile(log, 'twelve bytes');
    const shipper = createLogShipper({
      store: dead,
      token,
      host: 'h1',
      logFile: log,
      secretValues: [],
      intervalMs: 10,
      finalTries: 2,
    });
    const { log: ref, storeProblems } = await shipper.finish();
    expect(storeProblems).toEqual([
      "store unreachable: the log's last 12 bytes were not shipped (the store did not answer); the whole log stays on h1",
    ]);
    // Nothing reached the store: the record names no shipped log.
    expect(ref).toBeUndefined();
  });
});
