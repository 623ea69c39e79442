import type { Decision, GitAction, TerminalStatus } from './experiment.js';

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

export interface TagCounts {
  total: number;
  kept: number;
  discarded: number;
  crashed: number;
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
  /** Which rule decided, e.g. first_run, improved, tie_simplification, below_noise_floor, guard_failed, crash. */
  rule: string;
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
    counts: { total: 0, kept: 0, discarded: 0, crashed: 0, nearMisses: 0 },
    recent: [],
  };
}

export function comparabilityGroup(policy: TagPolicy, acceleratorClass: string): string {
  return policy.compareAcrossClasses ? 'all' : acceleratorClass;
}

function improves(policy: TagPolicy, candidate: number, best: number): boolean {
  return policy.direction === 'minimize' ? candidate < best : candidate > best;
}

/** Applies one finished run to the tag; returns the new state and the decision, without mutating input. */
export function applyOutcome(state: TagState, outcome: RunOutcome): { state: TagState; decision: TagDecision } {
  const { policy } = state;
  const group = comparabilityGroup(policy, outcome.acceleratorClass);
  const previous = state.best[group];
  const counts = { ...state.counts, total: state.counts.total + 1 };
  const best = { ...state.best };
  let consecutiveCrashes: number;
  let decision: Decision | null = null;
  let nearMiss = false;
  let delta: number | null = null;

  if (outcome.status === 'completed' && outcome.metric !== null) {
    consecutiveCrashes = 0;
    delta = previous ? outcome.metric - previous.metric : null;
    if (!previous || improves(policy, outcome.metric, previous.metric)) {
      decision = 'keep';
      counts.kept++;
      best[group] = { experimentId: outcome.experimentId, metric: outcome.metric, commit: outcome.commit };
    } else {
      decision = 'discard';
      counts.discarded++;
      nearMiss = Math.abs(outcome.metric - previous.metric) <= policy.nearMissThreshold;
      if (nearMiss) counts.nearMisses++;
    }
  } else if (outcome.status === 'canceled') {
    // An operator's cancel says nothing about the idea: it neither counts as a crash nor resets the counter.
    consecutiveCrashes = state.consecutiveCrashes;
  } else {
    consecutiveCrashes = state.consecutiveCrashes + 1;
    counts.crashed++;
  }

  const tagDecision: TagDecision = {
    experimentId: outcome.experimentId,
    sequence: counts.total,
    status: outcome.status,
    decision,
    action: decision === 'keep' ? 'keep_commit' : decision === 'discard' ? 'git_reset' : null,
    metric: outcome.metric,
    best: best[group]?.metric ?? null,
    delta,
    nearMiss,
    consecutiveCrashes,
    shouldAbort: consecutiveCrashes >= policy.maxConsecutiveCrashes,
    rule: decision === 'keep' ? (previous ? 'improved' : 'first_run') : decision === 'discard' ? 'not_improved' : outcome.status,
    comparedWith: { group, experimentId: previous?.experimentId ?? null, metric: previous?.metric ?? null },
  };
  return {
    state: { ...state, best, counts, consecutiveCrashes, recent: [...state.recent, tagDecision].slice(-RECENT_LIMIT) },
    decision: tagDecision,
  };
}
