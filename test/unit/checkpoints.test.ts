import { describe, expect, it } from 'vitest';
import {
  CheckpointDocumentSchema,
  isCheckpointCandidate,
  parseCheckpointQuota,
  planCheckpointSync,
  CHECKPOINT_SETTLE_MS,
  restoreCandidates,
  resumedFromValue,
  skippedText,
  storeCheckpointProblem,
  storeCheckpointSource,
  type ScannedFile,
} from '../../src/domain/checkpoints.js';

const file = (path: string, bytes: number, mtimeMs: number): ScannedFile => ({ path, bytes, mtimeMs });
const GiB = 1024 ** 3;

describe('which checkpoint files are synced', () => {
  it('leaves out work in progress: dotfiles in any folder, *.tmp and *.partial', () => {
    for (const name of ['.step-3.pt', 'sub/.hidden', '.cache/x.pt', 'step-3.pt.tmp', 'model.PARTIAL', 'a//b'])
      expect(isCheckpointCandidate(name), name).toBe(false);
    for (const name of ['step-3.pt', 'opt/state.bin', 'model.tmp.pt', 'v1.2/weights'])
      expect(isCheckpointCandidate(name), name).toBe(true);
  });

  it('syncs a file only once two scans saw the same size and mtime (complete), newest first', () => {
    const previous = [file('a.pt', 10, 1000), file('b.pt', 10, 2000), file('growing.pt', 5, 3000)];
    const current = [
      file('a.pt', 10, 1000),
      file('b.pt', 10, 2000),
      file('growing.pt', 9, 3100),
      file('new.pt', 1, 4000),
    ];
    const plan = planCheckpointSync(current, previous, 1000, false);
    expect(plan.sync.map((f) => f.path)).toEqual(['b.pt', 'a.pt']);
    expect(plan.skipped).toEqual([]);
  });

  it('takes a file not written for CHECKPOINT_SETTLE_MS at once (renamed into place), not one written just now', () => {
    const now = 10_000;
    const current = [
      file('settled.pt', 10, now - CHECKPOINT_SETTLE_MS),
      file('fresh.pt', 10, now - 100),
      file('old.pt.tmp', 10, 1000),
    ];
    const plan = planCheckpointSync(current, [], 1000, false, now);
    expect(plan.sync.map((f) => f.path)).toEqual(['settled.pt']);
  });

  it('at exit takes every complete-named file (nothing can write it any more), but never a temporary one', () => {
    const current = [file('a.pt', 10, 1000), file('new.pt', 1, 4000), file('x.pt.tmp', 1, 5000)];
    const plan = planCheckpointSync(current, [], 1000, true);
    expect(plan.sync.map((f) => f.path)).toEqual(['new.pt', 'a.pt']);
  });

  it('keeps the newest files within the quota and names what it skipped and why', () => {
    const files = [
      file('huge.pt', 30, 5000),
      file('step-3.pt', 6, 4000),
      file('step-2.pt', 6, 3000),
      file('step-1.pt', 3, 2000),
    ];
    const plan = planCheckpointSync(files, files, 10, false);
    expect(plan.sync.map((f) => f.path)).toEqual(['step-3.pt', 'step-1.pt']);
    expect(plan.skipped).toEqual([
      { path: 'huge.pt', bytes: 30, reason: 'over_quota' },
      { path: 'step-2.pt', bytes: 6, reason: 'quota_full' },
    ]);
  });

  it('says a skipped file in words, with sizes in binary units', () => {
    expect(skippedText({ path: 'x.pt', bytes: 12 * GiB, reason: 'over_quota' }, 10 * GiB)).toBe(
      "checkpoint x.pt (12.0 GiB) over the run's quota 10.0 GiB: skipped",
    );
    expect(skippedText({ path: 'old.pt', bytes: 2048, reason: 'quota_full' }, 4096)).toMatch(
      /old\.pt \(2\.0 KiB\) does not fit the run's quota 4\.0 KiB beside newer files: skipped/,
    );
  });
});

describe('which checkpoint a resumed attempt restores', () => {
  it('tries the earlier attempts that synced one, the latest first, never its own or a later one', () => {
    expect(restoreCandidates(4, [1, 3, 2, 5, 4, 3])).toEqual([3, 2, 1]);
    expect(restoreCandidates(1, [1, 2])).toEqual([]);
    expect(restoreCandidates(Infinity, [2, 1])).toEqual([2, 1]);
  });

  it('tells the script ATTEMPT@SYNCED_AT (ID:ATTEMPT@SYNCED_AT for another experiment)', () => {
    expect(resumedFromValue(2, '2026-12-07T05:31:02.123Z')).toBe('2@2026-12-07T05:31:02.123Z');
    expect(resumedFromValue(1, '2026-12-07T05:31:02.123Z', 'exp-base-1')).toBe('exp-base-1:1@2026-12-07T05:31:02.123Z');
  });

  it('refuses a checkpoint document that names a path outside the directory or a bad hash', () => {
    const good = {
      attempt: 1,
      syncedAt: '2026-12-07T05:31:02.123Z',
      trainingSeconds: 12.5,
      files: [{ path: 'sub/step-1.pt', sha256: 'a'.repeat(64), bytes: 3 }],
      skipped: [],
    };
    expect(CheckpointDocumentSchema.safeParse(good).success).toBe(true);
    for (const path of ['../escape', '/etc/passwd', 'a/../../b', '.hidden', 'x\u0000y'])
      expect(CheckpointDocumentSchema.safeParse({ ...good, files: [{ ...good.files[0], path }] }).success, path).toBe(
        false,
      );
    expect(CheckpointDocumentSchema.safeParse({ ...good, files: [{ ...good.files[0], sha256: 'zz' }] }).success).toBe(
      false,
    );
  });
});

describe('--checkpoint store:EXPERIMENT_ID and the quota setting', () => {
  it('reads the experiment of a store checkpoint, and leaves a path alone', () => {
    expect(storeCheckpointSource('store:exp-base-20261207-053102-a1b2c3')).toBe('exp-base-20261207-053102-a1b2c3');
    expect(storeCheckpointSource('ckpt/model.pt')).toBeNull();
    expect(storeCheckpointProblem('ckpt/model.pt')).toBeNull();
    expect(storeCheckpointProblem('store:exp-base-1')).toBeNull();
  });

  it('refuses a malformed store checkpoint with the form it expects', () => {
    for (const bad of ['store:', 'store:a/b', 'store:..', 'store:has space'])
      expect(storeCheckpointProblem(bad), bad).toMatch(/must be store:EXPERIMENT_ID/);
  });

  it('reads EXPCTL_CHECKPOINT_QUOTA in bytes or binary units, and refuses anything else', () => {
    expect(parseCheckpointQuota('20GiB')).toBe(20 * GiB);
    expect(parseCheckpointQuota('512 MiB')).toBe(512 * 1024 ** 2);
    expect(parseCheckpointQuota('1000')).toBe(1000);
    for (const bad of ['', '0', '-1', '20GB', 'lots'])
      expect(() => parseCheckpointQuota(bad), bad).toThrow(/EXPCTL_CHECKPOINT_QUOTA must be a size such as 20GiB/);
  });
});
