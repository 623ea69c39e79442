import { describe, expect, it } from 'vitest';
import { redactEnv, scrubText, secretValues } from '../../src/domain/redact.js';
import { CATEGORIES } from '../../src/domain/request.js';
import { bestTrend, chooseMode, proposeVariants, suggest, type RunSummary } from '../../src/domain/strategy.js';

let n = 0;
function runOf(kind: 'keep' | 'discard' | 'near' | 'crash', category = 'hyperparams', metric = 1): RunSummary {
  n++;
  return {
    id: `e${n}`,
    category,
    hypothesis: `idea ${n}`,
    status: kind === 'crash' ? 'command_failed' : 'completed',
    decision: kind === 'keep' ? 'keep' : kind === 'crash' ? null : 'discard',
    metric: kind === 'crash' ? null : metric,
    nearMiss: kind === 'near',
    delta: kind === 'near' ? 0.001 : null,
  };
}
const many = (count: number, kind: Parameters<typeof runOf>[0]) => Array.from({ length: count }, () => runOf(kind));

describe('chooseMode', () => {
  it.each([
    ['few runs', [runOf('keep')], 'explore'],
    ['many recent crashes', [runOf('keep'), ...many(3, 'crash')], 'exploit'],
    ['plateau with near misses', [runOf('keep'), ...many(6, 'discard'), ...many(2, 'near')], 'combine'],
    ['plateau without near misses', [runOf('keep'), ...many(8, 'discard')], 'ablation'],
    ['high keep rate', [...many(3, 'keep'), ...many(3, 'discard')], 'exploit'],
    ['low keep rate, no plateau', [runOf('keep'), ...many(6, 'discard')], 'explore'],
  ] as const)('%s → %s', (_name, runs, mode) => {
    expect(chooseMode([...runs]).mode).toBe(mode);
  });
});

describe('suggest', () => {
  it('reports categories, under-explored and high-yield ones, near-miss pairs and the trend', () => {
    const runs = [
      runOf('keep', 'optimizer', 2.0),
      runOf('keep', 'optimizer', 1.9),
      runOf('discard', 'optimizer', 1.95),
      runOf('near', 'architecture', 1.901),
      runOf('near', 'regularization', 1.9015),
      runOf('keep', 'architecture', 1.8),
    ];
    const advice = suggest(runs, CATEGORIES, 'minimize');
    expect(advice.categories.find((c) => c.category === 'optimizer')).toMatchObject({ runs: 3, kept: 2 });
    expect(advice.highYield).toEqual(['optimizer', 'architecture']);
    // Only the categories the tag used: regularization was tried once.
    expect(advice.categories.map((c) => c.category)).toEqual(['architecture', 'optimizer', 'regularization']);
    expect(advice.underExplored).toEqual(['regularization']);
    expect(advice.combine).toHaveLength(1);
    expect(advice.combine[0]).toMatchObject({ a: runs[3]!.id, b: runs[4]!.id });
    expect(advice.trend.direction).toBe('improving');
  });

  it('lists the categories the tag never used only when asked', () => {
    const runs = [runOf('keep', 'hyperparams', 2.0), runOf('discard', 'hyperparams', 2.1)];
    expect(suggest(runs, CATEGORIES, 'minimize').underExplored).toEqual([]);
    expect(suggest(runs, CATEGORIES, 'minimize').categories.map((c) => c.category)).toEqual(['hyperparams']);
    const all = suggest(runs, CATEGORIES, 'minimize', undefined, { allCategories: true });
    expect(all.categories).toHaveLength(CATEGORIES.length);
    expect(all.underExplored).toEqual(CATEGORIES.filter((c) => c !== 'hyperparams'));
  });
});

describe('the trend is judged on the best', () => {
  it('a discard that scored worse is not a worsening: the best never moved', () => {
    const runs = [
      runOf('keep', 'hyperparams', 2.0),
      runOf('keep', 'hyperparams', 1.9),
      runOf('discard', 'hyperparams', 1.9),
      runOf('discard', 'hyperparams', 3.5),
    ];
    expect(bestTrend(runs, 'minimize')).toEqual({
      recentMetrics: [2.0, 1.9, 1.9, 3.5],
      best_metrics: [2.0, 1.9, 1.9, 1.9],
      slopePerRun: expect.any(Number),
      direction: 'improving',
    });
    const stuck = [runOf('keep', 'hyperparams', 1.0), ...[1.2, 1.5, 3.0, 1.1].map((m) => runOf('discard', 'x', m))];
    expect(bestTrend(stuck, 'minimize')).toMatchObject({
      best_metrics: [1, 1, 1, 1, 1],
      slopePerRun: 0,
      direction: 'flat',
    });
  });

  it('follows the direction, ignores runs before the first keep, and needs three points', () => {
    const up = [runOf('discard', 'x', 0.1), ...[0.5, 0.6, 0.7].map((m) => runOf('keep', 'x', m))];
    expect(bestTrend(up, 'maximize')).toMatchObject({ best_metrics: [0.5, 0.6, 0.7], direction: 'improving' });
    expect(bestTrend(up.slice(0, 3), 'maximize')).toMatchObject({ slopePerRun: null, direction: 'unknown' });
    expect(bestTrend([runOf('crash'), runOf('crash')], 'minimize')).toEqual({
      recentMetrics: [],
      best_metrics: [],
      slopePerRun: null,
      direction: 'unknown',
    });
  });
});

describe('redaction', () => {
  it('redacts secret-looking names and scrubs their values from text', () => {
    const env = {
      HF_TOKEN: 'hf_abcdef',
      WANDB_API_KEY: 'k-123456',
      PATH: '/usr/bin',
      DB_PASSWORD: 'pw-secret',
      SHORT_KEY: 'ab',
    };
    expect(redactEnv(env)).toEqual({
      DB_PASSWORD: '[redacted]',
      HF_TOKEN: '[redacted]',
      PATH: '/usr/bin',
      SHORT_KEY: '[redacted]',
      WANDB_API_KEY: '[redacted]',
    });
    expect(scrubText('login hf_abcdef with k-123456 and pw-secret on /usr/bin', secretValues(env))).toBe(
      'login [redacted] with [redacted] and [redacted] on /usr/bin',
    );
  });
});

describe('proposeVariants (suggest --k)', () => {
  const runs = [
    runOf('keep', 'optimizer', 2.0),
    runOf('keep', 'optimizer', 1.9),
    runOf('near', 'architecture', 1.901),
    runOf('near', 'attention', 1.902),
    runOf('discard', 'hyperparams', 1.95),
  ];

  it('takes the kinds of idea in turn, the mode first, and stops at k', () => {
    const advice = suggest(runs, CATEGORIES, 'minimize', { mode: 'combine', reason: 'test' });
    const proposals = proposeVariants(advice, 4);
    expect(proposals.map((p) => p.kind)).toEqual(['combine', 'exploit', 'explore', 'explore']);
    expect(proposals[0]).toMatchObject({ category: 'combination', buildsOn: [runs[2]!.id, runs[3]!.id] });
    expect(proposals[1]).toMatchObject({ category: 'optimizer', why: 'optimizer: 2 of 2 runs kept' });
    expect(new Set(proposals.map((p) => `${p.kind}:${p.category}`)).size).toBe(4);
  });

  it('explores first in explore mode, and never proposes more than there are ideas', () => {
    const advice = suggest(runs, ['optimizer', 'architecture'], 'minimize', { mode: 'explore', reason: 'test' });
    const proposals = proposeVariants(advice, 10);
    expect(proposals.map((p) => `${p.kind}:${p.category}`)).toEqual([
      'explore:architecture',
      'combine:combination',
      'exploit:optimizer',
    ]);
  });
});
