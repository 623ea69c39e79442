import { ActivityFailure, isCancellation } from '@temporalio/workflow';
import { classifyTraining } from '../../domain/classify.js';
import type { TrainingOutcome } from '../../domain/experiment.js';
import { budgetOverrunSeconds } from '../../domain/limits.js';
import { RunEnded, type ExperimentRun } from './state.js';

/** Judges what training produced: its status, metric and reason (a budget overrun is noted, not punished). */
export function evaluate(run: ExperimentRun, outcome: TrainingOutcome): RunEnded {
  const { snapshot, request } = run;
  snapshot.training = outcome;
  run.pending.training = outcome;
  const verdict = classifyTraining(outcome, snapshot.metricPolicy.name);
  snapshot.metric = verdict.metric;
  // The budget is the script's to enforce; a run that overran it is still judged, and says so.
  const over = budgetOverrunSeconds(request.timeBudgetSeconds, outcome.timings?.trainingSeconds ?? null);
  const budgetNote =
    verdict.status === 'completed' && over !== null
      ? `; its training_seconds exceeded the ${request.timeBudgetSeconds} s budget by ${over} s`
      : '';
  return new RunEnded(verdict.status, verdict.reason + budgetNote);
}

/**
 * How a run that did not get as far as its verdict ended: the phase's own reason, a cancel, or a
 * control step that failed after its retries. Anything else is a bug, and fails the workflow task.
 */
export function endedEarly(run: ExperimentRun, error: unknown): RunEnded {
  if (error instanceof RunEnded) return error;
  if (isCancellation(error)) {
    const by = run.canceledBy ? `${run.canceledBy.name} (${run.canceledBy.role})` : 'an operator';
    return new RunEnded('canceled', run.pastDeadline ?? `canceled by ${by} before training finished`);
  }
  if (error instanceof ActivityFailure)
    return new RunEnded(
      'retry_exhausted',
      `a control step failed after its retries: ${error.cause?.message ?? error.message}`,
    );
  throw error;
}
