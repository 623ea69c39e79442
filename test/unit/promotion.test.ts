import { parseDuration } from '../../src/domain/duration.js';
import { describe, expect, it } from 'vitest';
import {
  aliasStack,
  candidateRefusal,
  currentVersion,
  DEFAULT_REGRESSION_THRESHOLD,
  holdoutExperimentId,
  isPromotionId,
  judgeRegression,
  promotionExitCode,
  promotionWorkflowId,
  PROMOTION_CODES,
  rollbackTarget,
  type AliasMove,
} from '../../src/domain/promotion.js';

const judge = (candidate: number, incumbent: number | null, direction: 'minimize' | 'maximize' = 'minimize') =>
  judgeRegression({ candidate, incumbent, direction, threshold: DEFAULT_REGRESSION_THRESHOLD, metricName: 'val_bpb' });

describe('judgeRegression', () => {
  it('passes without an incumbent', () => {
    expect(judge(5, null)).toMatchObject({ regressed: false, worseBy: null });
  });
  it('passes an improvement and a tie', () => {
    expect(judge(0.9, 1.0).regressed).toBe(false);
    expect(judge(1.0, 1.0).regressed).toBe(false);
    expect(judge(1.0, 1.0).reason).toMatch(/no regression/);
  });
  it('passes a regression within the relative threshold (1 % of the incumbent by default)', () => {
    const verdict = judge(1.009, 1.0);
    expect(verdict.regressed).toBe(false);
    expect(verdict.reason).toMatch(/within the allowed 0.01/);
  });
  it('blocks a regression beyond the threshold', () => {
    const verdict = judge(1.2, 1.0);
    expect(verdict).toMatchObject({ regressed: true, allowed: 0.01 });
    expect(verdict.worseBy).toBeCloseTo(0.2);
    expect(verdict.reason).toMatch(/worse by 0.2, more than the allowed 0.01 \(threshold 0.01\)/);
  });
  it('reads the direction: higher is better when maximizing', () => {
    expect(judge(0.8, 1.0, 'maximize').regressed).toBe(true);
    expect(judge(1.2, 1.0, 'maximize').regressed).toBe(false);
    expect(judge(1.2, 1.0, 'minimize').regressed).toBe(true);
  });
  it('uses |incumbent| for negative metrics', () => {
    expect(judge(-0.995, -1.0, 'minimize').regressed).toBe(false);
    expect(judge(-0.9, -1.0, 'minimize').regressed).toBe(true);
  });
  it('a zero threshold blocks any regression; a non-finite candidate is blocked', () => {
    expect(
      judgeRegression({ candidate: 1.0001, incumbent: 1, direction: 'minimize', threshold: 0, metricName: 'm' })
        .regressed,
    ).toBe(true);
    expect(judge(Number.NaN, 1).regressed).toBe(true);
  });
});

const move = (kind: AliasMove['kind'], version: number, previousVersion: number | null): AliasMove => ({
  kind,
  version,
  previousVersion,
  at: '2026-01-01T00:00:00Z',
});

describe('alias history', () => {
  it('an alias never moved holds nothing and cannot be rolled back', () => {
    expect(currentVersion([])).toBeNull();
    expect(rollbackTarget([])).toBeNull();
    expect(rollbackTarget([move('promote', 1, null)])).toBeNull();
  });
  it('a rollback goes to the version held before the current one', () => {
    const moves = [move('promote', 1, null), move('promote', 2, 1), move('promote', 3, 2)];
    expect(currentVersion(moves)).toBe(3);
    expect(rollbackTarget(moves)).toEqual({ from: 3, to: 2 });
  });
  it('successive rollbacks walk back along the history, not back and forth', () => {
    const moves = [move('promote', 1, null), move('promote', 2, 1), move('promote', 3, 2), move('rollback', 2, 3)];
    expect(aliasStack(moves)).toEqual([1, 2]);
    expect(rollbackTarget(moves)).toEqual({ from: 2, to: 1 });
    expect(rollbackTarget([...moves, move('rollback', 1, 2)])).toBeNull();
  });
  it('a promotion after a rollback stacks on the version rolled back to', () => {
    const moves = [move('promote', 1, null), move('promote', 2, 1), move('rollback', 1, 2), move('promote', 3, 1)];
    expect(currentVersion(moves)).toBe(3);
    expect(rollbackTarget(moves)).toEqual({ from: 3, to: 1 });
  });
  it('promoting the version the alias already holds adds nothing to roll back to', () => {
    expect(aliasStack([move('promote', 1, null), move('promote', 1, 1)])).toEqual([1]);
  });
});

describe('candidateRefusal', () => {
  const kept = {
    status: 'completed',
    decision: 'keep' as string | null,
    artifacts: [{ path: 'model.txt' }],
    request: { env: { VAL_BPB: '1.0' } as Record<string, string>, secrets: {} },
  };
  it('accepts a kept run with one artifact', () => {
    expect(candidateRefusal(kept, undefined, '[redacted]')).toBeNull();
    expect(candidateRefusal(kept, 'model.txt', '[redacted]')).toBeNull();
  });
  it('refuses what was not kept, has no such artifact, or needs secrets the record lacks', () => {
    expect(candidateRefusal({ ...kept, decision: 'discard' }, undefined, 'R')?.code).toBe(PROMOTION_CODES.notKept);
    expect(candidateRefusal({ ...kept, status: 'command_failed', decision: null }, undefined, 'R')?.reason).toMatch(
      /this one is command_failed/,
    );
    expect(candidateRefusal({ ...kept, artifacts: [] }, undefined, 'R')?.code).toBe(PROMOTION_CODES.noArtifact);
    expect(candidateRefusal(kept, 'other.bin', 'R')?.reason).toMatch(/no artifact other.bin \(it has model.txt\)/);
    expect(candidateRefusal({ ...kept, artifacts: [{ path: 'a' }, { path: 'b' }] }, undefined, 'R')?.code).toBe(
      PROMOTION_CODES.ambiguousArtifact,
    );
    expect(candidateRefusal({ ...kept, request: { env: { K: 'R' } } }, undefined, 'R')?.code).toBe(
      PROMOTION_CODES.secretsNotKept,
    );
  });
});

describe('IDs, durations and exit codes', () => {
  it('promotion and holdout IDs', () => {
    const id = promotionWorkflowId('lm', '20260101-000000-abcdef');
    expect(id).toBe('expctl-promotion-lm-20260101-000000-abcdef');
    expect(isPromotionId(id)).toBe(true);
    expect(isPromotionId('exp-lm-1')).toBe(false);
    expect(holdoutExperimentId(id)).toBe('exp-holdout-lm-20260101-000000-abcdef');
  });
  it('parses durations', () => {
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(() => parseDuration('0s')).toThrow(/greater than 0/);
    expect(() => parseDuration('soon')).toThrow(/expected a duration/);
  });
  it('exit codes', () => {
    expect(promotionExitCode('promoted')).toBe(0);
    expect(promotionExitCode('blocked')).toBe(3);
    expect(promotionExitCode('rejected')).toBe(3);
    expect(promotionExitCode('failed')).toBe(4);
  });
});
