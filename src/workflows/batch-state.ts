import type { Authorization } from '../domain/authorization.js';
import type { ExperimentResult, TerminalStatus } from '../domain/experiment.js';
import type { ExperimentInput } from './experiment-state.js';

/** Input of batchWorkflow: the children, each a signed experiment input with its batch membership. */
export interface BatchInput {
  batchId: string;
  tag: string;
  /** The commit every child is a child of (what the agent resets to when none is kept). */
  base: string;
  members: ExperimentInput[];
  /** ISO time after which unfinished children are canceled and the rest decided. */
  deadline?: string;
  submittedAt: string;
  /** The submitter's signature over the batch (action submit on the batch ID). */
  authorization?: Authorization;
}

/** What `expctl batch` prints: the git action for the branch and every child's result. */
export interface BatchResult {
  batch_id: string;
  tag: string;
  base: string;
  /** advance: `git reset --hard <commit>` to the winner; reset: back to the base. */
  action: 'advance' | 'reset';
  commit: string;
  /** The kept child's experiment ID, or null. */
  winner: string | null;
  metric_name: string;
  /** The tag's best after the batch. */
  best: number | null;
  consecutive_crashes: number;
  should_abort: boolean;
  reason: string;
  children: ExperimentResult[];
}

export interface BatchSnapshot {
  batchId: string;
  tag: string;
  base: string;
  status: 'running' | 'deciding' | 'decided';
  deadline: string | null;
  members: { experimentId: string; commit: string; ended: TerminalStatus | null }[];
  winner: string | null;
}
