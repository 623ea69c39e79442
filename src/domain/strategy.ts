import { countOutcomes, isCrash, outcomeRates } from './outcome.js';

/**
 * Search guidance for a tag: which mode to work in and what to try next. Pure and deterministic:
 * the same history always gives the same advice.
 */

export const MODES = ['explore', 'exploit', 'combine', 'ablation'] as const;
export type Mode = (typeof MODES)[number];

/** An operator's choice for a tag: a mode with the reason the record keeps, or `auto` (the rule decides again). */
export interface StrategyChange {
  mode: Mode | 'auto';
  reason?: string;
}

/** The longest reason the record keeps for an operator's mode. */
export const STRATEGY_REASON_MAX = 500;

/** Why a strategy change cannot be applied, or null: the CLI, the tag workflow and the activity all ask. */
export function strategyChangeProblem(change: { mode: unknown; reason?: unknown }): string | null {
  if (change.mode === 'auto') return null;
  if (!(MODES as readonly unknown[]).includes(change.mode)) return `--set must be one of ${MODES.join(', ')} or auto`;
  if (typeof change.reason !== 'string' || change.reason.trim() === '')
    return '--set needs --reason TEXT (the record says why the mode was chosen)';
  if (change.reason.length > STRATEGY_REASON_MAX) return `--reason is longer than ${STRATEGY_REASON_MAX} characters`;
  return null;
}

/** The part of a run the guidance looks at, in decision order. */
export interface RunSummary {
  id: string;
  category: string;
  hypothesis: string;
  status: string;
  decision: 'keep' | 'discard' | null;
  metric: number | null;
  nearMiss: boolean;
  delta: number | null;
}

export const PLATEAU_RUNS = 8;
const RECENT = 5;

/** The crash rule of outcome.ts: only the experiment's own failures (command_failed, oom, timed_out). */
export function crashed(run: RunSummary): boolean {
  return isCrash(run.status);
}

/** Runs since the last keep, and how many of them were near misses. */
export function plateau(runs: RunSummary[]): { length: number; nearMisses: number } {
  const lastKeep = runs.map((r) => r.decision).lastIndexOf('keep');
  const since = runs.slice(lastKeep + 1);
  return { length: since.length, nearMisses: since.filter((r) => r.nearMiss).length };
}

/** The rule: many recent crashes → exploit conservatively; a long plateau → combine or ablate; a high keep rate → exploit; else explore. */
export function chooseMode(runs: RunSummary[]): { mode: Mode; reason: string } {
  const recent = runs.slice(-RECENT);
  const recentCrashes = recent.filter(crashed).length;
  if (recentCrashes >= 3)
    return {
      mode: 'exploit',
      reason: `${recentCrashes} of the last ${recent.length} runs crashed: make small, safe changes to the best commit`,
    };
  const flat = plateau(runs);
  if (flat.length >= PLATEAU_RUNS && flat.nearMisses >= 2)
    return {
      mode: 'combine',
      reason: `no keep in ${flat.length} runs, but ${flat.nearMisses} near misses: combine them`,
    };
  if (flat.length >= PLATEAU_RUNS)
    return {
      mode: 'ablation',
      reason: `no keep in ${flat.length} runs and no near misses: remove parts to learn what matters`,
    };
  const counts = countOutcomes(runs);
  const { runs: counted, keepRate } = outcomeRates(counts);
  if (counted >= 5 && keepRate >= 0.3)
    return { mode: 'exploit', reason: `${counts.kept} of ${counted} runs kept: refine what works` };
  return {
    mode: 'explore',
    reason:
      runs.length < 5
        ? `only ${runs.length} runs so far: try different kinds of ideas`
        : 'few keeps and no plateau yet: keep exploring',
  };
}

export interface CategoryStats {
  category: string;
  runs: number;
  kept: number;
  keepRate: number;
  crashes: number;
}

export interface Suggestion {
  mode: Mode;
  reason: string;
  /** The categories the tag used (every category when asked for all). */
  categories: CategoryStats[];
  /** Of those, the ones with fewer than 2 runs. */
  underExplored: string[];
  highYield: string[];
  combine: { a: string; b: string; hypotheses: [string, string]; why: string }[];
  trend: {
    /** The metrics of the last runs that have one, kept or not. */
    recentMetrics: number[];
    /** The tag's best kept metric after each of those runs: what the trend is judged on. */
    best_metrics: number[];
    /** Slope of best_metrics per run. */
    slopePerRun: number | null;
    /** The best only moves one way: it improved over those runs, or stayed flat. */
    direction: 'improving' | 'flat' | 'unknown';
  };
}

/** How many of the latest runs with a metric the trend looks at. */
const TREND_RUNS = 10;
/** The fewest points a trend is judged on. */
const TREND_MIN_POINTS = 3;

/** Least-squares slope of a series against its index. */
function slopeOf(values: number[]): number {
  const n = values.length;
  const meanX = (n - 1) / 2;
  const meanY = values.reduce((a, b) => a + b, 0) / n;
  const num = values.reduce((acc, y, x) => acc + (x - meanX) * (y - meanY), 0);
  const den = values.reduce((acc, _, x) => acc + (x - meanX) ** 2, 0);
  return num / den;
}

/**
 * The trend of a tag's best (BRIEF §5: the best kept metric): the best after each of the latest
 * runs with a metric. A discard that scored worse leaves the best where it was, so it never reads
 * as getting worse; only keeps move it. Before the first keep there is no best to judge.
 */
export function bestTrend(runs: RunSummary[], direction: 'minimize' | 'maximize'): Suggestion['trend'] {
  const better = (a: number, b: number) => (direction === 'minimize' ? a < b : a > b);
  let best: number | null = null;
  const points: { metric: number; best: number | null }[] = [];
  for (const run of runs) {
    if (run.metric === null) continue;
    if (run.decision === 'keep' && (best === null || better(run.metric, best))) best = run.metric;
    points.push({ metric: run.metric, best });
  }
  const recent = points.slice(-TREND_RUNS);
  const bests = recent.map((p) => p.best).filter((b): b is number => b !== null);
  const slope = bests.length >= TREND_MIN_POINTS ? slopeOf(bests) : null;
  const gain = slope === null ? null : direction === 'minimize' ? -slope : slope;
  const scale = bests.length ? Math.max(...bests.map(Math.abs)) * 1e-4 : 0;
  return {
    recentMetrics: recent.map((p) => p.metric),
    best_metrics: bests,
    slopePerRun: slope,
    direction: gain === null ? 'unknown' : gain > scale ? 'improving' : 'flat',
  };
}

/**
 * Everything an agent needs to pick its next experiment, structured. Only the categories the tag
 * used are listed (a category it never touched may not fit its model at all), unless
 * `allCategories` asks for every one of `categories`.
 */
export function suggest(
  runs: RunSummary[],
  categoryNames: readonly string[],
  direction: 'minimize' | 'maximize',
  modeOverride?: { mode: Mode; reason: string },
  options: { allCategories?: boolean } = {},
): Suggestion {
  const used = new Set(runs.map((r) => r.category));
  const listed = options.allCategories ? categoryNames : categoryNames.filter((c) => used.has(c));
  const categories: CategoryStats[] = listed.map((category) => {
    const counts = countOutcomes(runs.filter((r) => r.category === category));
    const rates = outcomeRates(counts);
    return { category, runs: rates.runs, kept: counts.kept, keepRate: rates.keepRate, crashes: counts.crashed };
  });
  const nearMisses = runs.filter((r) => r.nearMiss);
  const combine = [];
  for (let i = 0; i < nearMisses.length; i++) {
    for (let j = i + 1; j < nearMisses.length; j++) {
      const a = nearMisses[i]!;
      const b = nearMisses[j]!;
      if (a.category === b.category && a.category !== 'hyperparams') continue;
      combine.push({
        a: a.id,
        b: b.id,
        hypotheses: [a.hypothesis, b.hypothesis] as [string, string],
        why: `both within the near-miss threshold (deltas ${a.delta?.toFixed(6)}, ${b.delta?.toFixed(6)})`,
      });
    }
  }
  const { mode, reason } = modeOverride ?? chooseMode(runs);
  return {
    mode,
    reason,
    categories,
    underExplored: categories.filter((c) => c.runs < 2).map((c) => c.category),
    highYield: categories
      .filter((c) => c.runs >= 2 && c.keepRate >= 0.3)
      .sort((a, b) => b.keepRate - a.keepRate)
      .map((c) => c.category),
    combine: combine.slice(0, 10),
    trend: bestTrend(runs, direction),
  };
}

/** One next variant for a batch: what kind of change to make, and on what evidence. */
export interface VariantProposal {
  kind: 'combine' | 'explore' | 'exploit';
  category: string;
  /** Runs it builds on (the near misses to combine), by experiment ID. */
  buildsOn: string[];
  why: string;
}

/**
 * K diverse next variants for `expctl batch`, from a suggestion: combinations of near misses,
 * categories not yet tried and categories that keep paying off, taken in turn (the tag's mode
 * goes first), so a batch spreads over kinds of ideas rather than K of one.
 */
export function proposeVariants(advice: Suggestion, k: number): VariantProposal[] {
  const combine: VariantProposal[] = advice.combine.map((pair) => ({
    kind: 'combine',
    category: 'combination',
    buildsOn: [pair.a, pair.b],
    why: `combine "${pair.hypotheses[0]}" with "${pair.hypotheses[1]}" (${pair.why})`,
  }));
  const explore: VariantProposal[] = advice.underExplored.map((category) => ({
    kind: 'explore',
    category,
    buildsOn: [],
    why: `${category}: fewer than 2 runs so far`,
  }));
  const exploit: VariantProposal[] = advice.highYield.map((category) => {
    const stats = advice.categories.find((c) => c.category === category)!;
    return {
      kind: 'exploit',
      category,
      buildsOn: [],
      why: `${category}: ${stats.kept} of ${stats.runs} runs kept`,
    };
  });
  const sources =
    advice.mode === 'combine'
      ? [combine, exploit, explore]
      : advice.mode === 'exploit'
        ? [exploit, combine, explore]
        : [explore, combine, exploit];
  const proposals: VariantProposal[] = [];
  for (let round = 0; proposals.length < k && sources.some((source) => round < source.length); round++)
    for (const source of sources) if (round < source.length && proposals.length < k) proposals.push(source[round]!);
  return proposals;
}
