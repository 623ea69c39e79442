import type { TerminalStatus } from './experiment.js';

/**
 * What a terminal state means for the agent's tag (BRIEF §5): the one crash rule. Decisions,
 * catalog queries, reports, strategy, TSV and HTML all read it from here.
 */

export type OutcomeKind = 'success' | 'crash' | 'refusal' | 'infrastructure' | 'canceled';

/** The experiment's own failures: they count toward consecutive crashes and are `crash` in results.tsv. */
export const CRASH_STATUSES = ['command_failed', 'oom', 'timed_out'] as const satisfies readonly TerminalStatus[];
/** The request was refused before any GPU was touched. */
export const REFUSAL_STATUSES = ['validation_failed'] as const satisfies readonly TerminalStatus[];
/** The fleet failed the run, not the code. */
export const INFRASTRUCTURE_STATUSES = ['worker_lost', 'retry_exhausted'] as const satisfies readonly TerminalStatus[];

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
