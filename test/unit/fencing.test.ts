import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_FENCING_SECONDS,
  FENCE_KILL_GRACE_SECONDS,
  FENCING_MARGIN_SECONDS,
  killLimitSeconds,
  leaseCheckIntervalMs,
  livenessPeriodMs,
  leaseRoundMs,
  MIN_KILL_HEADROOM_SECONDS,
  remainingLimits,
  replaceNotBeforeMs,
} from '../../src/domain/limits.js';
import { leaseConfirmer } from '../../src/gpu-worker/kept-runs.js';
import { resumedFromOutcome, withLostSeconds, type AttemptRecord } from '../../src/domain/attempts.js';
import { attemptLine } from '../../src/cli/commands/experiments.js';
import { checkpointDocuments } from '../../src/cli/commands/actions.js';
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

describe('livenessPeriodMs: how often a host heartbeats, its heartbeats confirming its runs', () => {
  it('keeps the registered period where that confirms often enough, and the check interval where not', () => {
    expect(livenessPeriodMs(10_000)).toBe(10_000);
    expect(livenessPeriodMs(10_000, 6)).toBe(1500);
    expect(livenessPeriodMs(2_000, 60)).toBe(2_000);
  });
});

describe("leaseCheckIntervalMs: how often a run's lease is confirmed", () => {
  it('asks four times within the fencing time, so three missed answers in a row do not fence a healthy run', () => {
    expect(leaseCheckIntervalMs(20)).toBe(5000);
    expect(leaseCheckIntervalMs(6)).toBe(1500);
    // Each check waits at most half the interval for its host's round: a confirmation is at most
    // one interval old when the next is asked.
    expect(leaseRoundMs(leaseCheckIntervalMs(6))).toBe(750);
  });
  it('asks every 15 s at the default fencing time, and never more often than every second', () => {
    expect(leaseCheckIntervalMs()).toBe(15_000);
    expect(leaseCheckIntervalMs(DEFAULT_FENCING_SECONDS)).toBe(15_000);
    expect(leaseCheckIntervalMs(600)).toBe(15_000);
    expect(leaseCheckIntervalMs(2)).toBe(1000);
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

describe('the per-attempt record', () => {
  const base: AttemptRecord = {
    attempt: 1,
    host: 'a',
    slotId: 'a/cpu0',
    startedAt: '2026-12-07T05:00:00.000Z',
    endedAt: '2026-12-07T05:02:00.000Z',
    ended: 'lost',
    why: 'the worker on a stopped answering',
    reattached: 0,
    resumedFrom: null,
    carriedSeconds: 0,
    trainedSeconds: 95.3,
    lostSeconds: null,
  };
  const resumed = (attempt: number, trainingSeconds: number, experimentId = 'exp-1') => ({
    ...base,
    attempt: attempt + 1,
    host: 'b',
    slotId: 'b/cpu0',
    ended: 'completed' as const,
    why: null,
    resumedFrom: { experimentId, attempt, writtenAt: '2026-12-07T05:01:30.000Z', trainingSeconds },
    carriedSeconds: 95.3,
    trainedSeconds: 200,
  });

  it('charges a lost attempt with what it trained beyond the checkpoint its successor resumed from', () => {
    const [first, second] = withLostSeconds([base, resumed(1, 80)], 'exp-1');
    expect(first!.lostSeconds).toBe(15.3);
    expect(second!.lostSeconds).toBeNull();
  });
  it('counts checkpoint seconds from the run start: an attempt charged with earlier training loses only its own', () => {
    const second = { ...base, attempt: 2, carriedSeconds: 50, trainedSeconds: 40 };
    const [, lost] = withLostSeconds([base, second, resumed(2, 80)], 'exp-1');
    expect(lost!.lostSeconds).toBe(10);
  });
  it('charges all of it when the successor resumed from nothing, or from another attempt or run', () => {
    expect(withLostSeconds([base, { ...resumed(1, 80), resumedFrom: null }], 'exp-1')[0]!.lostSeconds).toBe(95.3);
    expect(withLostSeconds([base, resumed(1, 80, 'exp-other')], 'exp-1')[0]!.lostSeconds).toBe(95.3);
    expect(withLostSeconds([base], 'exp-1')[0]!.lostSeconds).toBe(95.3);
  });
  it("reads what an attempt resumed from out of its outcome's checkpoint report, null when it resumed nothing", () => {
    expect(
      resumedFromOutcome({
        checkpoint: {
          restore: {
            restored: true,
            experimentId: 'exp-1',
            attempt: 1,
            syncedAt: '2026-12-07T05:01:30.000Z',
            trainingSeconds: 80,
          },
        },
      }),
    ).toEqual({ experimentId: 'exp-1', attempt: 1, writtenAt: '2026-12-07T05:01:30.000Z', trainingSeconds: 80 });
    expect(resumedFromOutcome({ checkpoint: { restore: { restored: false } } })).toBeNull();
    expect(resumedFromOutcome({})).toBeNull();
    expect(resumedFromOutcome(null)).toBeNull();
  });
  it('shows each attempt on one line', () => {
    expect(attemptLine(base)).toBe(
      '#1 a/cpu0  2026-12-07T05:00:00.000Z → 2026-12-07T05:02:00.000Z  lost: the worker on a stopped answering; started fresh; trained 95.3s',
    );
    expect(attemptLine({ ...resumed(1, 80), reattached: 2, lostSeconds: null })).toBe(
      "#2 b/cpu0  2026-12-07T05:00:00.000Z → 2026-12-07T05:02:00.000Z  completed; re-attached 2x; resumed from attempt 1's checkpoint of 2026-12-07T05:01:30.000Z (80s trained); trained 200s",
    );
  });
});

describe('retry --resume finds the checkpoints of the run it resumes', () => {
  it('counts only checkpoint documents of that experiment', () => {
    expect(
      checkpointDocuments(
        [
          'runs/exp-1/attempts/1/checkpoint',
          'runs/exp-1/attempts/2/log',
          'runs/exp-10/attempts/1/checkpoint',
          'runs/exp-1/attempts/x/checkpoint',
          'runs/exp-1/attempts/3/checkpoint',
        ],
        'exp-1',
      ),
    ).toEqual(['runs/exp-1/attempts/1/checkpoint', 'runs/exp-1/attempts/3/checkpoint']);
  });
});
