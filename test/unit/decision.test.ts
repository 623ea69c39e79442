import { describe, expect, it } from 'vitest';
import { applyOutcome, newTagState, type RunOutcome, type TagState } from '../../src/domain/decision.js';

const outcome = (experimentId: string, status: RunOutcome['status'], metric: number | null, acceleratorClass = 'h100'): RunOutcome => ({
  experimentId,
  status,
  metric,
  acceleratorClass,
  commit: experimentId.padEnd(40, '0'),
});

function applyAll(state: TagState, outcomes: RunOutcome[]) {
  const decisions = [];
  for (const o of outcomes) {
    const next = applyOutcome(state, o);
    state = next.state;
    decisions.push(next.decision);
  }
  return { state, decisions };
}

describe('applyOutcome', () => {
  it('keeps the first success and any strict improvement; discards ties and regressions', () => {
    const { decisions, state } = applyAll(newTagState('t'), [
      outcome('a', 'completed', 1.0),
      outcome('b', 'completed', 1.0),
      outcome('c', 'completed', 1.1),
      outcome('d', 'completed', 0.9),
    ]);
    expect(decisions.map((d) => [d.decision, d.action, d.best])).toEqual([
      ['keep', 'keep_commit', 1.0],
      ['discard', 'git_reset', 1.0],
      ['discard', 'git_reset', 1.0],
      ['keep', 'keep_commit', 0.9],
    ]);
    expect(decisions[0]!.delta).toBeNull();
    expect(decisions[3]!.delta).toBeCloseTo(-0.1, 12);
    expect(state.counts).toEqual({ total: 4, kept: 2, discarded: 2, crashed: 0, nearMisses: 1 });
  });

  it('flags near misses within the threshold only', () => {
    const { decisions } = applyAll(newTagState('t', { nearMissThreshold: 0.01 }), [
      outcome('a', 'completed', 1.0),
      outcome('b', 'completed', 1.005),
      outcome('c', 'completed', 1.02),
    ]);
    expect(decisions.map((d) => d.nearMiss)).toEqual([false, true, false]);
  });

  it('maximizes when the tag says so', () => {
    const { decisions } = applyAll(newTagState('t', { direction: 'maximize' }), [outcome('a', 'completed', 0.5), outcome('b', 'completed', 0.6), outcome('c', 'completed', 0.55)]);
    expect(decisions.map((d) => d.decision)).toEqual(['keep', 'keep', 'discard']);
  });

  it('counts consecutive crashes across failure kinds, aborts at the limit, resets on success, ignores cancels', () => {
    const { decisions } = applyAll(newTagState('t'), [
      outcome('a', 'command_failed', null),
      outcome('b', 'oom', null),
      outcome('c', 'canceled', null),
      outcome('d', 'timed_out', null),
      outcome('e', 'completed', 2.0),
      outcome('f', 'worker_lost', null),
    ]);
    expect(decisions.map((d) => [d.consecutiveCrashes, d.shouldAbort])).toEqual([
      [1, false],
      [2, false],
      [2, false],
      [3, true],
      [0, false],
      [1, false],
    ]);
  });

  it('compares only within an accelerator class unless the tag allows it, and records the comparison', () => {
    const perClass = applyAll(newTagState('t'), [outcome('a', 'completed', 1.0, 'h100'), outcome('b', 'completed', 1.2, 'a100')]);
    expect(perClass.decisions[1]).toMatchObject({ decision: 'keep', comparedWith: { group: 'a100', experimentId: null } });
    const across = applyAll(newTagState('t', { compareAcrossClasses: true }), [outcome('a', 'completed', 1.0, 'h100'), outcome('b', 'completed', 1.2, 'a100')]);
    expect(across.decisions[1]).toMatchObject({ decision: 'discard', comparedWith: { group: 'all', experimentId: 'a', metric: 1.0 } });
  });

  it('does not mutate the state it is given', () => {
    const state = newTagState('t');
    const frozen = JSON.stringify(state);
    applyOutcome(state, outcome('a', 'completed', 1));
    expect(JSON.stringify(state)).toBe(frozen);
  });
});
