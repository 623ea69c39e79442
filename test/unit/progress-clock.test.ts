import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProgressClock } from '../../src/gpu-worker/timings.js';

// autoresearch's progress line (\r-redrawn in the real script; one per line here).
const STEP =
  'step 00953 (100.0%) | loss: 3.123456 | lrm: 0.00 | dt: 314ms | tok/sec: 1,668,404 | mfu: 39.8% | epoch: 1 | remaining: 0s';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-clock-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A clock on a fresh log, started at t = 1,000,000 ms of its own time. */
async function startedClock(name: string) {
  const file = path.join(dir, name);
  fs.writeFileSync(file, 'setup output\n');
  const time = { now: 1_000_000 };
  const clock = new ProgressClock(file, () => time.now);
  await clock.start();
  return { file, time, clock };
}

/** Appends text as written at `writtenMs` while the clock's next read comes at `readMs` (all at once). */
function write(file: string, text: string, writtenMs: number, time: { now: number }, readMs: number) {
  fs.appendFileSync(file, text);
  fs.utimesSync(file, new Date(writtenMs), new Date(writtenMs));
  time.now = readMs;
}

describe('ProgressClock: when the last progress line was written', () => {
  it('is the time the line was written, not when a late read (a loaded host) saw it', async () => {
    const { file, time, clock } = await startedClock('late.log');
    write(file, `${STEP}\n`, 1_000_400, time, 1_002_000);
    await clock.stop();
    expect(clock.firstProgressMs).toBeCloseTo(1_000_400, 1);
    expect(clock.lastProgressMs).toBeCloseTo(1_000_400, 1);
  });

  it('is the read time when other output follows the line (its own write time is unknown)', async () => {
    const { file, time, clock } = await startedClock('followed.log');
    write(file, `${STEP}\nsaving checkpoint\n`, 1_000_400, time, 1_002_000);
    await clock.stop();
    expect(clock.lastProgressMs).toBe(1_002_000);
  });

  it('is never before the previous read, where the file system keeps coarse times', async () => {
    const { file, time, clock } = await startedClock('coarse.log');
    write(file, `${STEP}\n`, 999_000, time, 1_002_000);
    await clock.stop();
    expect(clock.lastProgressMs).toBe(1_000_000);
  });
});
