import { isTerminal, type TerminalStatus } from './experiment.js';

/**
 * What a terminal state means for the agent's tag (BRIEF §5): the one crash rule. Decisions,
 * catalog queries, reports, strategy, TSV and HTML all read it from here.
 */

export type OutcomeKind = 'success' | 'crash' | 'refusal' | 'infrastructure' | 'canceled';

/** The experiment's own failures: they count toward consecutive crashes and are `crash` in results.tsv. */
export const CRASH_STATUSES = ['command_failed', 'oom', 'timed_out'] as const satisfies readonly TerminalStatus[];
/** The request was refused before any GPU was touched. */
export const REFUSAL_STATUSES = ['validation_failed'] as const satisfies readonly TerminalStatus[];
/** The fleet (its hosts, its GPUs or its data pipeline) failed the run, not the code. */
export const INFRASTRUCTURE_STATUSES = [
  'worker_lost',
  'retry_exhausted',
  'gpu_failed',
  'data_unavailable',
] as const satisfies readonly TerminalStatus[];

export function outcomeKind(status: TerminalStatus): OutcomeKind {
  if (status === 'completed') return 'success';
  if (status === 'canceled') return 'canceled';
  if ((CRASH_STATUSES as readonly string[]).includes(status)) return 'crash';
  if ((REFUSAL_STATUSES as readonly string[]).includes(status)) return 'refusal';
  return 'infrastructure';
}

/** True for the experiment's own failures only (command_failed, oom, timed_out). */
export function isCrash(status: string): boolean {
  return (CRASH_STATUSES as readonly string[]).includes(status);
}

/** The same rule as an SQL condition on a status column, for catalog queries. */
export function crashSql(column = 'status'): string {
  return `${column} IN (${CRASH_STATUSES.map((s) => `'${s}'`).join(', ')})`;
}

/**
 * What one decided run is in a tag's results: a row of results.tsv (keep, discard, crash) or a
 * run reported apart (refused, infrastructure, canceled). Decided by the status first (the crash
 * rule above), then by the tag's decision: a timed-out run is discarded and reset, yet a crash.
 */
export type ResultKind = 'keep' | 'discard' | 'crash' | 'refused' | 'infrastructure' | 'canceled';

/** The kinds that are rows of results.tsv and the denominator of keep and crash rates. */
export const COUNTED_KINDS = ['keep', 'discard', 'crash'] as const satisfies readonly ResultKind[];

export function resultKind(status: TerminalStatus, decision: 'keep' | 'discard' | null): ResultKind {
  switch (outcomeKind(status)) {
    case 'success':
      return decision === 'keep' ? 'keep' : 'discard';
    case 'crash':
      return 'crash';
    case 'refusal':
      return 'refused';
    case 'infrastructure':
      return 'infrastructure';
    case 'canceled':
      return 'canceled';
  }
}

export function isCounted(kind: ResultKind): boolean {
  return (COUNTED_KINDS as readonly string[]).includes(kind);
}

export interface OutcomeCounts {
  kept: number;
  discarded: number;
  crashed: number;
  refused: number;
  infrastructure: number;
  canceled: number;
}

export const NO_OUTCOMES: OutcomeCounts = {
  kept: 0,
  discarded: 0,
  crashed: 0,
  refused: 0,
  infrastructure: 0,
  canceled: 0,
};

const COUNT_FIELD: Record<ResultKind, keyof OutcomeCounts> = {
  keep: 'kept',
  discard: 'discarded',
  crash: 'crashed',
  refused: 'refused',
  infrastructure: 'infrastructure',
  canceled: 'canceled',
};

/** Adds one run of the given kind to the counts (returns new counts). */
export function countKind(counts: OutcomeCounts, kind: ResultKind): OutcomeCounts {
  const field = COUNT_FIELD[kind];
  return { ...counts, [field]: counts[field] + 1 };
}

/** Counts decided runs by kind; runs still active are skipped. */
export function countOutcomes(runs: readonly { status: string; decision: 'keep' | 'discard' | null }[]): OutcomeCounts {
  let counts = NO_OUTCOMES;
  for (const run of runs) {
    if (isTerminal(run.status)) counts = countKind(counts, resultKind(run.status, run.decision));
  }
  return counts;
}

/**
 * Keep rate and crash rate, the one definition every surface uses: over the runs that count
 * (kept + discarded + crashed, the rows of results.tsv). Refused, infrastructure and canceled
 * runs are not the agent's ideas being tried, so they are in neither numerator nor denominator.
 */
export function outcomeRates(counts: Pick<OutcomeCounts, 'kept' | 'discarded' | 'crashed'>): {
  runs: number;
  keepRate: number;
  crashRate: number;
} {
  const runs = counts.kept + counts.discarded + counts.crashed;
  return { runs, keepRate: runs ? counts.kept / runs : 0, crashRate: runs ? counts.crashed / runs : 0 };
}
