import { describe, expect, it } from 'vitest';
import { applyOutcome, guardHolds, newTagState, type RunOutcome, type TagState } from '../../src/domain/decision.js';
import { parseDecimal, parseGuard } from '../../src/domain/guard.js';
import { policyFromOptions } from '../../src/cli/commands/tag.js';

const outcome = (
  experimentId: string,
  status: RunOutcome['status'],
  metric: number | null,
  acceleratorClass = 'h100',
  extra: Partial<RunOutcome> = {},
): RunOutcome => ({
  experimentId,
  status,
  metric,
  acceleratorClass,
  commit: experimentId.padEnd(40, '0'),
  ...extra,
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
    expect(decisions.map((d) => [d.decision, d.action, d.best, d.rule])).toEqual([
      ['keep', 'keep_commit', 1.0, 'first_run'],
      ['discard', 'git_reset', 1.0, 'tie'],
      ['discard', 'git_reset', 1.0, 'not_improved'],
      ['keep', 'keep_commit', 0.9, 'improved'],
    ]);
    expect(decisions[0]!.delta).toBeNull();
    expect(decisions[3]!.delta).toBeCloseTo(-0.1, 12);
    expect(state.counts).toEqual({
      total: 4,
      kept: 2,
      discarded: 2,
      crashed: 0,
      refused: 0,
      infrastructure: 0,
      canceled: 0,
      nearMisses: 1,
    });
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
    const { decisions } = applyAll(newTagState('t', { direction: 'maximize' }), [
      outcome('a', 'completed', 0.5),
      outcome('b', 'completed', 0.6),
      outcome('c', 'completed', 0.55),
    ]);
    expect(decisions.map((d) => d.decision)).toEqual(['keep', 'keep', 'discard']);
  });

  it('counts only command_failed, oom and timed_out as crashes; refusals, infrastructure and cancels neither count nor reset', () => {
    const { decisions, state } = applyAll(newTagState('t'), [
      outcome('a', 'command_failed', null),
      outcome('b', 'oom', null),
      outcome('c', 'canceled', null),
      outcome('v', 'validation_failed', null),
      outcome('w', 'worker_lost', null),
      outcome('r', 'retry_exhausted', null),
      outcome('x', 'gpu_failed', null),
      outcome('d', 'timed_out', null),
      outcome('e', 'completed', 2.0),
      outcome('f', 'worker_lost', null),
      outcome('g', 'validation_failed', null),
      outcome('h', 'validation_failed', null),
      outcome('i', 'validation_failed', null),
    ]);
    expect(decisions.map((d) => [d.experimentId, d.consecutiveCrashes, d.shouldAbort])).toEqual([
      ['a', 1, false],
      ['b', 2, false],
      ['c', 2, false],
      ['v', 2, false],
      ['w', 2, false],
      ['r', 2, false],
      ['x', 2, false],
      ['d', 3, true],
      ['e', 0, false],
      ['f', 0, false],
      ['g', 0, false],
      ['h', 0, false],
      ['i', 0, false],
    ]);
    expect(state.counts).toEqual({
      total: 13,
      kept: 1,
      discarded: 0,
      crashed: 3,
      refused: 4,
      infrastructure: 4,
      canceled: 1,
      nearMisses: 0,
    });
  });

  it('discards and resets a timed-out run (program.md: discard and revert); other crashes have no decision', () => {
    const { decisions } = applyAll(newTagState('t'), [
      outcome('a', 'completed', 1),
      outcome('b', 'timed_out', null),
      outcome('c', 'command_failed', null),
      outcome('d', 'oom', null),
    ]);
    expect(decisions.slice(1).map((d) => [d.decision, d.action, d.rule])).toEqual([
      ['discard', 'git_reset', 'timed_out'],
      [null, null, 'command_failed'],
      [null, null, 'oom'],
    ]);
  });

  it('compares only within an accelerator class unless the tag allows it, and records the comparison', () => {
    const perClass = applyAll(newTagState('t'), [
      outcome('a', 'completed', 1.0, 'h100'),
      outcome('b', 'completed', 1.2, 'a100'),
    ]);
    expect(perClass.decisions[1]).toMatchObject({
      decision: 'keep',
      comparedWith: { group: 'a100', experimentId: null },
    });
    const across = applyAll(newTagState('t', { compareAcrossClasses: true }), [
      outcome('a', 'completed', 1.0, 'h100'),
      outcome('b', 'completed', 1.2, 'a100'),
    ]);
    expect(across.decisions[1]).toMatchObject({
      decision: 'discard',
      comparedWith: { group: 'all', experimentId: 'a', metric: 1.0 },
    });
  });

  it('does not mutate the state it is given', () => {
    const state = newTagState('t');
    const frozen = JSON.stringify(state);
    applyOutcome(state, outcome('a', 'completed', 1));
    expect(JSON.stringify(state)).toBe(frozen);
  });
});

describe('keep rules', () => {
  it('keeps only improvements beyond the noise floor', () => {
    const { decisions } = applyAll(newTagState('t', { minImprovement: 0.01 }), [
      outcome('a', 'completed', 1.0),
      outcome('b', 'completed', 0.995),
      outcome('c', 'completed', 0.98),
      outcome('d', 'completed', 0.99),
    ]);
    expect(decisions.map((d) => [d.decision, d.rule, d.best])).toEqual([
      ['keep', 'first_run', 1.0],
      ['discard', 'below_noise_floor', 1.0],
      ['keep', 'improved', 0.98],
      ['discard', 'not_improved', 0.98],
    ]);
  });

  it('discards ties unless the run is a simplification', () => {
    const { decisions } = applyAll(newTagState('t'), [
      outcome('a', 'completed', 1.0),
      outcome('b', 'completed', 1.0),
      outcome('c', 'completed', 1.0, 'h100', { simplification: true }),
      outcome('d', 'completed', 1.001, 'h100', { simplification: true }),
    ]);
    expect(decisions.map((d) => [d.decision, d.rule])).toEqual([
      ['keep', 'first_run'],
      ['discard', 'tie'],
      ['keep', 'tie_simplification'],
      ['discard', 'not_improved'],
    ]);
    expect(decisions[1]!.nearMiss).toBe(true);
  });

  it('keeps a simplification within the noise floor', () => {
    const { decisions } = applyAll(newTagState('t', { minImprovement: 0.01 }), [
      outcome('a', 'completed', 1.0),
      outcome('b', 'completed', 0.995, 'h100', { simplification: true }),
    ]);
    expect(decisions[1]).toMatchObject({ decision: 'keep', rule: 'tie_simplification', best: 0.995 });
  });

  it('applies guards like the autotrader fork (score, maximize, val_pass == true)', () => {
    const policy = {
      metricName: 'score',
      direction: 'maximize' as const,
      guards: [parseGuard('val_pass==true'), parseGuard('sharpe>=1.5')],
    };
    const run = (id: string, score: number, metrics: Record<string, number | string>) =>
      outcome(id, 'completed', score, 'h100', { metrics: { score, ...metrics } });
    const { decisions, state } = applyAll(newTagState('t', policy), [
      run('a', 1.0, { val_pass: 'True', sharpe: 1.6 }),
      run('b', 2.0, { val_pass: 'False', sharpe: 2.0 }),
      run('c', 3.0, { sharpe: 2.0 }),
      run('d', 4.0, { val_pass: 'true', sharpe: 1.4 }),
      run('e', 5.0, { val_pass: 1, sharpe: 1.5 }),
    ]);
    expect(decisions.map((d) => [d.decision, d.rule, d.failedGuard ?? null])).toEqual([
      ['keep', 'first_run', null],
      ['discard', 'guard_failed', 'val_pass == true'],
      ['discard', 'guard_failed', 'val_pass == true'],
      ['discard', 'guard_failed', 'sharpe >= 1.5'],
      ['keep', 'improved', null],
    ]);
    expect(state.best.h100!.metric).toBe(5.0);
  });

  it('keeps the best as the min kept metric per class and overall', () => {
    const { state } = applyAll(newTagState('t', { compareAcrossClasses: false }), [
      outcome('a', 'completed', 1.0, 'h100'),
      outcome('b', 'completed', 0.9, 'h100'),
      outcome('c', 'completed', 1.2, 'a100'),
      outcome('d', 'completed', 0.95, 'h100'),
    ]);
    expect(state.best.h100).toMatchObject({ experimentId: 'b', metric: 0.9 });
    expect(state.best.a100).toMatchObject({ experimentId: 'c', metric: 1.2 });
  });
});

describe('guards and numbers as typed', () => {
  it.each([
    ['val_pass==true', { metric: 'val_pass', op: '==', value: 'true' }],
    ['sharpe >= 1.5', { metric: 'sharpe', op: '>=', value: 1.5 }],
    ['val_pass == True', { metric: 'val_pass', op: '==', value: 'true' }],
    ['mode!=debug', { metric: 'mode', op: '!=', value: 'debug' }],
    ['drawdown<0.2', { metric: 'drawdown', op: '<', value: 0.2 }],
    ['loss<=-1e-3', { metric: 'loss', op: '<=', value: -0.001 }],
  ])('parses %s', (text, rule) => expect(parseGuard(text)).toEqual(rule));

  it.each([
    ['val_pass', /must be METRIC OP VALUE/],
    ['sharpe >= abc', /compares numbers, and "abc" is not a number/],
    ['9bad==1', /is not a metric name/],
    ['==1', /must be METRIC OP VALUE/],
    ['x =< 1', /must be METRIC OP VALUE|is not a number/],
  ])('refuses %s', (text, message) => expect(() => parseGuard(text)).toThrow(message));

  it('evaluates guards against the block, a missing value failing', () => {
    expect(guardHolds(parseGuard('val_pass==true'), { val_pass: 'True' })).toBe(true);
    expect(guardHolds(parseGuard('val_pass==true'), {})).toBe(false);
    expect(guardHolds(parseGuard('val_pass!=true'), { val_pass: 'False' })).toBe(true);
    expect(guardHolds(parseGuard('sharpe>1'), { sharpe: 'high' })).toBe(false);
  });

  it('parses numbers strictly', () => {
    expect(parseDecimal('0.002', '--near-miss')).toBe(0.002);
    for (const bad of ['abc', '0x10', '', '1.5abc', 'Infinity', '1,5']) {
      expect(() => parseDecimal(bad, '--near-miss')).toThrow(`--near-miss must be a decimal number, got "${bad}"`);
    }
  });

  it('tag create refuses malformed options with a specific message instead of storing null', () => {
    expect(() => policyFromOptions({ nearMiss: 'abc' })).toThrow('--near-miss "abc": expected a decimal number');
    expect(() => policyFromOptions({ maxCrashes: '2.5' })).toThrow('--max-crashes "2.5": expected an integer');
    expect(() => policyFromOptions({ minImprovement: '-1' })).toThrow('--min-improvement "-1": must be at least 0');
    expect(() => policyFromOptions({ guard: ['sharpe>=high'] })).toThrow(/compares numbers/);
    expect(() => policyFromOptions({ metric: 'bad metric' })).toThrow(/--metric "bad metric": expected a metric name/);
    expect(
      policyFromOptions({
        metric: 'score',
        maximize: true,
        minImprovement: '0.001',
        guard: ['val_pass==true'],
        nearMiss: '0',
      }),
    ).toEqual({
      metricName: 'score',
      direction: 'maximize',
      minImprovement: 0.001,
      nearMissThreshold: 0,
      guards: [{ metric: 'val_pass', op: '==', value: 'true' }],
    });
  });
});
