import { describe, expect, it } from 'vitest';
import { applyOutcome, newTagState, type RunOutcome, type TagState } from '../../src/domain/decision.js';
import { applyTournament, batchExitCode, batchGitAction, bestAfterBatch } from '../../src/domain/tournament.js';

const outcome = (
  experimentId: string,
  status: RunOutcome['status'],
  metric: number | null,
  extra = {},
): RunOutcome => ({
  experimentId,
  status,
  metric,
  acceleratorClass: 'h100',
  commit: experimentId.padEnd(40, '0'),
  ...extra,
});

/** A tag whose best is 1.0 (one kept run) and whose crash counter is at `crashes`. */
function tagWithBest(crashes = 0, policy = {}): TagState {
  let state = applyOutcome(
    newTagState('t', { nearMissThreshold: 0.01, ...policy }),
    outcome('base', 'completed', 1.0, { metrics: { val_pass: 'true' } }),
  ).state;
  for (let i = 0; i < crashes; i++) state = applyOutcome(state, outcome(`crash${i}`, 'command_failed', null)).state;
  return state;
}

describe('applyTournament', () => {
  it('keeps only the best improving child; the others are discarded, near misses flagged', () => {
    const verdict = applyTournament(tagWithBest(2), [
      outcome('a', 'completed', 0.99), // beats the best, but not b
      outcome('b', 'completed', 0.95), // the winner
      outcome('c', 'command_failed', null),
      outcome('d', 'completed', 1.005), // worse than the old best
    ]);
    expect(verdict.winner).toEqual({ experimentId: 'b', commit: 'b'.padEnd(40, '0'), metric: 0.95 });
    expect(verdict.decisions.map((d) => [d.experimentId, d.decision, d.rule])).toEqual([
      ['a', 'discard', 'outranked'],
      ['b', 'keep', 'improved'],
      ['c', null, 'command_failed'],
      ['d', 'discard', 'not_improved'],
    ]);
    // a worked (a near miss worth combining); d is within 0.01 of the best it was compared with.
    expect(verdict.decisions.map((d) => d.nearMiss)).toEqual([true, false, false, true]);
    // Each child's best is the best it was judged against (its own metric when kept), as `run` prints.
    expect(verdict.decisions.map((d) => d.best)).toEqual([1.0, 0.95, 1.0, 1.0]);
    // Deltas are rounded as the metric is (6 decimals).
    expect(verdict.decisions.map((d) => d.delta)).toEqual([-0.01, -0.05, null, 0.005]);
    for (const d of verdict.decisions.filter((d) => d.decision === 'discard'))
      expect(d.metric! - d.delta!).toBeCloseTo(d.best!, 12);
    expect(bestAfterBatch(verdict.winner, verdict.decisions)).toBe(0.95);
    expect(verdict.state.best.h100).toMatchObject({ experimentId: 'b', metric: 0.95 });
    // One crash counted once, then reset by the completed children.
    expect(verdict.decisions[2]!.consecutiveCrashes).toBe(3);
    expect(verdict.state.consecutiveCrashes).toBe(0);
    expect(verdict.state.counts).toMatchObject({ total: 7, kept: 2, discarded: 2, crashed: 3 });
    expect(batchGitAction(verdict.winner, 'base')).toEqual({ action: 'advance', commit: 'b'.padEnd(40, '0') });
  });

  it('judges every child against the best before the batch', () => {
    const verdict = applyTournament(tagWithBest(), [outcome('a', 'completed', 0.955), outcome('b', 'completed', 0.95)]);
    expect(verdict.decisions[0]).toMatchObject({
      decision: 'discard',
      rule: 'outranked',
      nearMiss: true,
      best: 1,
      comparedWith: { experimentId: 'base', metric: 1 },
    });
    expect(verdict.decisions[1]).toMatchObject({ decision: 'keep', comparedWith: { experimentId: 'base', metric: 1 } });
  });

  it('resets to the base when no child beats the best', () => {
    const verdict = applyTournament(tagWithBest(), [outcome('a', 'completed', 1.0), outcome('b', 'completed', 1.2)]);
    expect(verdict.winner).toBeNull();
    expect(verdict.decisions.map((d) => d.rule)).toEqual(['tie', 'not_improved']);
    expect(verdict.state.best.h100?.experimentId).toBe('base');
    expect(verdict.decisions.map((d) => d.best)).toEqual([1.0, 1.0]);
    expect(bestAfterBatch(verdict.winner, verdict.decisions)).toBe(1.0);
    expect(batchGitAction(verdict.winner, 'base')).toEqual({ action: 'reset', commit: 'base' });
  });

  it('counts each crash once when every child crashed, and says when to abort', () => {
    const verdict = applyTournament(tagWithBest(1), [
      outcome('a', 'command_failed', null),
      outcome('b', 'oom', null),
      outcome('c', 'timed_out', null),
    ]);
    expect(verdict.state.consecutiveCrashes).toBe(4);
    expect(verdict.decisions.map((d) => d.consecutiveCrashes)).toEqual([2, 3, 4]);
    expect(verdict.decisions[2]!.shouldAbort).toBe(true);
  });

  it('skips a child that fails a guard and keeps the next best', () => {
    const policy = { guards: [{ metric: 'val_pass', op: '==' as const, value: 'true' }] };
    const verdict = applyTournament(tagWithBest(0, policy), [
      outcome('a', 'completed', 0.9, { metrics: { val_pass: 'false' } }),
      outcome('b', 'completed', 0.97, { metrics: { val_pass: 'true' } }),
    ]);
    expect(verdict.decisions.map((d) => [d.decision, d.rule])).toEqual([
      ['discard', 'guard_failed'],
      ['keep', 'improved'],
    ]);
  });

  it('keeps at most one child, even two simplifications that tie', () => {
    const verdict = applyTournament(tagWithBest(), [
      outcome('a', 'completed', 1.0, { simplification: true }),
      outcome('b', 'completed', 1.0, { simplification: true }),
    ]);
    expect(verdict.decisions.map((d) => [d.decision, d.rule])).toEqual([
      ['keep', 'tie_simplification'],
      ['discard', 'outranked'],
    ]);
  });

  it('judges a maximized metric highest first, and a new tag keeps its best first run', () => {
    const verdict = applyTournament(newTagState('t', { direction: 'maximize' }), [
      outcome('a', 'completed', 0.5),
      outcome('b', 'completed', 0.7),
      outcome('c', 'validation_failed', null),
    ]);
    expect(verdict.decisions.map((d) => [d.decision, d.rule])).toEqual([
      ['discard', 'outranked'],
      ['keep', 'first_run'],
      [null, 'validation_failed'],
    ]);
  });
});

describe('batchExitCode', () => {
  it("is run's code: 0 when any completed, else the most telling failure", () => {
    expect(batchExitCode([3, 0, 5])).toBe(0);
    expect(batchExitCode([2, 3, 5])).toBe(3);
    expect(batchExitCode([5, 4])).toBe(4);
    expect(batchExitCode([2, 2])).toBe(2);
  });
});
