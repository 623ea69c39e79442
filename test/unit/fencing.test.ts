import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_FENCING_SECONDS,
  FENCE_KILL_GRACE_SECONDS,
  FENCING_MARGIN_SECONDS,
  killLimitSeconds,
  MIN_KILL_HEADROOM_SECONDS,
  remainingLimits,
  replaceNotBeforeMs,
  trainingSecondsLost,
} from '../../src/domain/limits.js';
import { leaseConfirmer } from '../../src/gpu-worker/kept-runs.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';

describe('replaceNotBeforeMs: when a lost attempt may be placed again', () => {
  it("waits the host's fencing time, its kill grace and the margin after the last moment it could confirm", () => {
    expect(replaceNotBeforeMs(1_000_000, { fencingSeconds: 20, killGraceSeconds: 3 })).toBe(
      1_000_000 + (20 + 3 + FENCING_MARGIN_SECONDS) * 1000,
    );
  });
  it("takes the defaults for a host that did not say (an older worker's)", () => {
    expect(replaceNotBeforeMs(0, undefined)).toBe(
      (DEFAULT_FENCING_SECONDS + FENCE_KILL_GRACE_SECONDS + FENCING_MARGIN_SECONDS) * 1000,
    );
  });
});

describe('remainingLimits: the budget and the kill limit count across attempts', () => {
  const request = { timeBudgetSeconds: 300 };
  it('takes what earlier attempts trained off both', () => {
    expect(remainingLimits(request, 120)).toEqual({
      timeBudgetSeconds: 180,
      timeoutSeconds: killLimitSeconds(request) - 120,
    });
    expect(remainingLimits({ timeBudgetSeconds: 300, timeoutSeconds: 400 }, 100.4)).toEqual({
      timeBudgetSeconds: 200,
      timeoutSeconds: 300,
    });
  });
  it('leaves a second of budget and the startup headroom of kill limit however much was trained', () => {
    expect(remainingLimits(request, 10_000)).toEqual({
      timeBudgetSeconds: 1,
      timeoutSeconds: MIN_KILL_HEADROOM_SECONDS,
    });
  });
  it('changes nothing for a first attempt', () => {
    expect(remainingLimits(request, undefined)).toEqual({ timeBudgetSeconds: 300, timeoutSeconds: 600 });
    expect(remainingLimits(request, -5)).toEqual({ timeBudgetSeconds: 300, timeoutSeconds: 600 });
  });
});

describe('trainingSecondsLost', () => {
  it('is what the lost attempt trained beyond the checkpoint its successor resumed from', () => {
    expect(trainingSecondsLost(95.3, 80)).toBe(15.3);
  });
  it('is all of it when nothing was resumed, and never negative', () => {
    expect(trainingSecondsLost(95.3, null)).toBe(95.3);
    expect(trainingSecondsLost(10, 12)).toBe(0);
  });
});

describe('leaseConfirmer: a restarted worker keeps a kept run going only on a confirmed lease', () => {
  let workDir: string;
  const experimentId = 'exp-kept';
  beforeAll(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-fence-'));
    const files = runFiles(workDir, experimentId);
    await fs.mkdir(path.dirname(files.record), { recursive: true });
    await fs.writeFile(files.record, JSON.stringify({ experimentId, slotId: 'h/cpu0', leaseId: 'L1' }));
    await fs.writeFile(files.attached, '');
    const old = new Date(Date.now() - 60_000);
    await fs.utimes(files.attached, old, old);
  });
  afterAll(() => fs.rm(workDir, { recursive: true, force: true }));
  const attachedAt = async () => (await fs.stat(runFiles(workDir, experimentId).attached)).mtimeMs;

  it('does not touch the attached file when the pool says the lease is gone, or cannot be asked', async () => {
    const before = await attachedAt();
    const asked: string[] = [];
    await leaseConfirmer(workDir, async (slotId, leaseId) => {
      asked.push(`${slotId} ${leaseId}`);
      return false;
    })(experimentId);
    await leaseConfirmer(workDir, () => Promise.reject(new Error('deadline exceeded')))(experimentId);
    expect(asked).toEqual(['h/cpu0 L1']);
    expect(await attachedAt()).toBe(before);
  });
  it('dates the attached file when it asked, once the pool confirms the lease', async () => {
    let askedAt = 0;
    await leaseConfirmer(workDir, async () => {
      askedAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 300));
      return true;
    })(experimentId);
    const touched = await attachedAt();
    expect(touched).toBeGreaterThan(Date.now() - 5000);
    expect(touched).toBeLessThanOrEqual(askedAt + 1);
  });
  it('confirms nothing for a run without a recorded lease', async () => {
    const other = 'exp-no-lease';
    const files = runFiles(workDir, other);
    await fs.mkdir(path.dirname(files.record), { recursive: true });
    await fs.writeFile(files.record, JSON.stringify({ experimentId: other }));
    let asked = false;
    await leaseConfirmer(workDir, async () => (asked = true))(other);
    expect(asked).toBe(false);
    await expect(fs.access(files.attached)).rejects.toThrow();
  });
});
