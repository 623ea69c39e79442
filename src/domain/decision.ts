import type { Decision, GitAction, TerminalStatus } from './experiment.js';
import { countKind, isCrash, NO_OUTCOMES, outcomeRates, resultKind, type OutcomeCounts } from './outcome.js';
import { roundFigure } from './metrics.js';

/** Keep/discard rules for a tag (BRIEF §5). Pure: used by the tag workflow and tests. */

/** A value of the `---` block that must hold for a run to be kept, e.g. `val_pass == true`. */
export interface GuardRule {
  metric: string;
  op: '==' | '!=' | '>=' | '<=' | '>' | '<';
  value: number | string;
}

export interface TagPolicy {
  metricName: string;
  direction: 'minimize' | 'maximize';
  nearMissThreshold: number;
  maxConsecutiveCrashes: number;
  /** When false, runs are compared only with runs on the same accelerator class. */
  compareAcrossClasses: boolean;
  /** Noise floor: keep only when the improvement exceeds this (0: any improvement). */
  minImprovement: number;
  /** Values of the block that must hold for a keep. */
  guards: GuardRule[];
  /**
   * Loader and interpreter hijack variables (environment.ts) runs of this tag may set, by name.
   * Absent in tags created before it existed: none allowed.
   */
  allowEnv?: string[];
}

/** The metric an autoresearch tag is judged by, unless its policy says otherwise. */
export const DEFAULT_METRIC = { name: 'val_bpb', direction: 'minimize' } as const;

export const DEFAULT_TAG_POLICY: TagPolicy = {
  metricName: DEFAULT_METRIC.name,
  direction: DEFAULT_METRIC.direction,
  nearMissThreshold: 0.002,
  maxConsecutiveCrashes: 3,
  compareAcrossClasses: false,
  minImprovement: 0,
  guards: [],
};

export interface BestRun {
  experimentId: string;
  metric: number;
  commit: string;
}

/**
 * A tag's runs by kind (outcome.ts's resultKind): kept, discarded and crashed count toward the keep
 * and crash rates; refused, infrastructure and canceled runs are reported as what they are.
 */
export interface TagCounts extends OutcomeCounts {
  total: number;
  nearMisses: number;
}

export interface TagState {
  tag: string;
  policy: TagPolicy;
  /** Best run per comparability group: the accelerator class, or "all" across classes. */
  best: Record<string, BestRun>;
  consecutiveCrashes: number;
  counts: TagCounts;
  /** Decisions in the order they were made (bounded; the catalog keeps the full history). */
  recent: TagDecision[];
}

export interface RunOutcome {
  experimentId: string;
  status: TerminalStatus;
  metric: number | null;
  acceleratorClass: string;
  commit: string;
  /** Every value of the run's `---` block (guards read them). */
  metrics?: Record<string, number | string> | null;
  /** Marked a simplification: a tie is kept. */
  simplification?: boolean;
}

export interface TagDecision {
  experimentId: string;
  sequence: number;
  status: TerminalStatus;
  decision: Decision | null;
  action: GitAction | null;
  metric: number | null;
  best: number | null;
  delta: number | null;
  nearMiss: boolean;
  consecutiveCrashes: number;
  shouldAbort: boolean;
  /**
   * Which rule decided: first_run, improved, not_improved, tie, tie_simplification,
   * below_noise_floor, guard_failed, timed_out, no_metric, outranked (a batch sibling was kept);
   * else the status itself.
   */
  rule: string;
  /** With rule guard_failed: the first guard that failed or was missing, e.g. `val_pass == true`. */
  failedGuard?: string;
  /** What this run was compared with: the group and the previous best, if any. */
  comparedWith: { group: string; experimentId: string | null; metric: number | null };
}

const RECENT_LIMIT = 200;

export function newTagState(tag: string, policy: Partial<TagPolicy> = {}): TagState {
  return {
    tag,
    policy: { ...DEFAULT_TAG_POLICY, ...policy },
    best: {},
    consecutiveCrashes: 0,
    counts: { total: 0, ...NO_OUTCOMES, nearMisses: 0 },
    recent: [],
  };
}

export function comparabilityGroup(policy: TagPolicy, acceleratorClass: string): string {
  return policy.compareAcrossClasses ? 'all' : acceleratorClass;
}

export const GUARD_OPS = ['==', '!=', '>=', '<=', '>', '<'] as const satisfies readonly GuardRule['op'][];

/** Booleans as a script prints them (Python's True/False, JSON's true/false, 1/0). */
function asBoolean(value: number | string): boolean | null {
  if (typeof value === 'number') return value === 1 ? true : value === 0 ? false : null;
  const text = value.trim().toLowerCase();
  return text === 'true' ? true : text === 'false' ? false : null;
}

/** The guard as the operator wrote it, e.g. `val_pass == true`. */
export function formatGuard(guard: GuardRule): string {
  return `${guard.metric} ${guard.op} ${guard.value}`;
}

/** Why a guard's shape is invalid, or null; the tag workflow's update validator uses it. */
export function guardProblem(guard: GuardRule): string | null {
  if (typeof guard.metric !== 'string' || guard.metric === '') return 'a guard needs a metric name';
  if (!(GUARD_OPS as readonly string[]).includes(guard.op))
    return `guard ${guard.metric}: operator must be one of ${GUARD_OPS.join(' ')}`;
  if (typeof guard.value === 'number' && !Number.isFinite(guard.value))
    return `guard ${guard.metric}: the value must be a finite number`;
  if (typeof guard.value !== 'number' && (typeof guard.value !== 'string' || guard.value === ''))
    return `guard ${guard.metric}: the value must be a number or text`;
  if (typeof guard.value === 'string' && !['==', '!='].includes(guard.op))
    return `guard ${guard.metric}: ${guard.op} needs a number`;
  return null;
}

/** Whether a run's `---` block satisfies a guard; a missing value fails it. */
export function guardHolds(guard: GuardRule, metrics: Record<string, number | string> | null | undefined): boolean {
  const actual = metrics?.[guard.metric];
  if (actual === undefined) return false;
  let equal: boolean;
  if (typeof guard.value === 'number') {
    if (typeof actual !== 'number') return false;
    switch (guard.op) {
      case '>=':
        return actual >= guard.value;
      case '<=':
        return actual <= guard.value;
      case '>':
        return actual > guard.value;
      case '<':
        return actual < guard.value;
      default:
        equal = actual === guard.value;
    }
  } else {
    const wanted = asBoolean(guard.value);
    equal = wanted !== null ? asBoolean(actual) === wanted : String(actual) === guard.value;
  }
  return guard.op === '!=' ? !equal : equal;
}

/** How much better the candidate is than the best (positive: better), in the tag's direction. */
export function improvement(policy: TagPolicy, candidate: number, best: number): number {
  return policy.direction === 'minimize' ? best - candidate : candidate - best;
}

type Judgement = { decision: Decision; rule: string; nearMiss: boolean; failedGuard?: string };

/**
 * The keep rules for a completed run, in order: guards (a failed or missing guard discards),
 * first run, improvement beyond the noise floor, a tie or an improvement within the noise floor
 * (kept only when the run is a simplification), else not improved. Near misses are discards
 * within the near-miss threshold of the best.
 */
function judge(policy: TagPolicy, outcome: RunOutcome & { metric: number }, previous: BestRun | undefined): Judgement {
  // Defaults for policies carried over (continue-as-new) from before guards and the noise floor existed.
  const failed = (policy.guards ?? []).find((guard) => !guardHolds(guard, outcome.metrics));
  if (failed) return { decision: 'discard', rule: 'guard_failed', nearMiss: false, failedGuard: formatGuard(failed) };
  if (!previous) return { decision: 'keep', rule: 'first_run', nearMiss: false };
  const gain = improvement(policy, outcome.metric, previous.metric);
  const nearMiss = Math.abs(gain) <= policy.nearMissThreshold;
  if (gain > 0 && gain > (policy.minImprovement ?? 0)) return { decision: 'keep', rule: 'improved', nearMiss: false };
  if (gain >= 0) {
    if (outcome.simplification) return { decision: 'keep', rule: 'tie_simplification', nearMiss: false };
    return { decision: 'discard', rule: gain === 0 ? 'tie' : 'below_noise_floor', nearMiss };
  }
  return { decision: 'discard', rule: 'not_improved', nearMiss };
}

/**
 * Applies one finished run to the tag; returns the new state and the decision, without mutating input.
 * The crash rule (outcome.ts): only command_failed, oom and timed_out count toward consecutive
 * crashes and should_abort; a success resets the counter; refusals, infrastructure failures and
 * cancels neither count nor reset it. A timed-out run is discarded and reset (program.md: a run
 * that overruns its kill limit is "discard and revert"); other crashes have no decision.
 */
export function applyOutcome(
  state: TagState,
  outcome: RunOutcome,
  options: {
    /** A batch sibling was kept already (tournament.ts): this run can only be discarded. */
    outranked?: boolean;
  } = {},
): { state: TagState; decision: TagDecision } {
  const { policy } = state;
  const group = comparabilityGroup(policy, outcome.acceleratorClass);
  const previous = state.best[group];
  const best = { ...state.best };
  let consecutiveCrashes = state.consecutiveCrashes;
  let judgement: Judgement | null = null;
  let delta: number | null = null;
  let rule: string = outcome.status;

  if (outcome.status === 'completed') {
    consecutiveCrashes = 0;
    if (outcome.metric === null) {
      judgement = { decision: 'discard', rule: 'no_metric', nearMiss: false };
    } else {
      delta = previous ? roundFigure(outcome.metric - previous.metric) : null;
      judgement = judge(policy, { ...outcome, metric: outcome.metric }, previous);
      // It would have been kept: an idea that worked, flagged as a near miss worth combining.
      if (judgement.decision === 'keep' && options.outranked)
        judgement = { decision: 'discard', rule: 'outranked', nearMiss: true };
      if (judgement.decision === 'keep')
        best[group] = { experimentId: outcome.experimentId, metric: outcome.metric, commit: outcome.commit };
    }
    rule = judgement.rule;
  } else if (isCrash(outcome.status)) {
    consecutiveCrashes++;
    if (outcome.status === 'timed_out') judgement = { decision: 'discard', rule: 'timed_out', nearMiss: false };
  }

  const decision = judgement?.decision ?? null;
  const previousCounts = { ...NO_OUTCOMES, ...state.counts }; // states carried from before these fields existed
  const counts: TagCounts = {
    ...countKind(previousCounts, resultKind(outcome.status, decision)),
    total: previousCounts.total + 1,
    nearMisses: previousCounts.nearMisses + (judgement?.nearMiss ? 1 : 0),
  };
  const tagDecision: TagDecision = {
    experimentId: outcome.experimentId,
    sequence: counts.total,
    status: outcome.status,
    decision,
    action: decision === 'keep' ? 'keep_commit' : decision === 'discard' ? 'git_reset' : null,
    metric: outcome.metric,
    best: best[group]?.metric ?? null,
    delta,
    nearMiss: judgement?.nearMiss ?? false,
    consecutiveCrashes,
    shouldAbort: consecutiveCrashes >= policy.maxConsecutiveCrashes,
    rule,
    ...(judgement?.failedGuard ? { failedGuard: judgement.failedGuard } : {}),
    comparedWith: { group, experimentId: previous?.experimentId ?? null, metric: previous?.metric ?? null },
  };
  return {
    state: { ...state, best, counts, consecutiveCrashes, recent: [...state.recent, tagDecision].slice(-RECENT_LIMIT) },
    decision: tagDecision,
  };
}

/** The tag's counts and rates as `tag show` prints them (rates from outcome.ts, like every report). */
export function tagCountsSummary(counts: TagCounts): TagCounts & { runs: number; keepRate: number; crashRate: number } {
  const full = { ...NO_OUTCOMES, ...counts };
  return { ...full, ...outcomeRates(full) };
}
