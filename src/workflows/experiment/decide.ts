import { ApplicationFailure, condition, getExternalWorkflowHandle } from '@temporalio/workflow';
import type { RunOutcome, TagDecision } from '../../domain/decision.js';
import { evaluationDecision } from '../../domain/promotion.js';
import { batchMemberEndedSignal } from '../definitions.js';
import { control } from './activities.js';
import { mark, publish, type ExperimentRun, type RunEnded } from './state.js';

/** How long a batch child waits for its batch's decision before it is decided alone. */
const BATCH_DECISION_WAIT = '7 days';

/**
 * Keep or discard: its tag decides a run alone, its batch with its siblings; a promotion's
 * evaluation is judged by its promotion, never by its tag (the tag's state is not touched).
 */
export async function decide(run: ExperimentRun, ended: RunEnded, acceleratorClass: string): Promise<TagDecision> {
  const { experimentId, request, snapshot, input } = run;
  if (ended.status === 'completed' && !input.batch) mark(run, 'evaluating');
  try {
    const outcome = runOutcome(run, ended, acceleratorClass);
    const alone = () => control.applyTagOutcome({ tag: request.tag, metric: snapshot.metricPolicy, outcome });
    return run.evaluation
      ? evaluationDecision(experimentId, ended.status, snapshot.metric)
      : input.batch
        ? await decidedByBatch(run, input.batch.batchId, outcome, alone)
        : await alone();
  } catch (error) {
    throw ApplicationFailure.nonRetryable(
      `could not record the outcome on tag ${request.tag}: ${(error as Error).message}`,
    );
  }
}

/** What the tag (or the batch) decides a run by. */
export function runOutcome(run: ExperimentRun, ended: RunEnded, acceleratorClass: string): RunOutcome {
  const { experimentId, request, snapshot } = run;
  return {
    experimentId,
    status: ended.status,
    metric: snapshot.metric,
    acceleratorClass,
    commit: request.commit,
    metrics: snapshot.training?.metrics ?? null,
    simplification: request.simplification,
  };
}

/**
 * A batch child's decision: it tells its batch it has ended and waits for the batch to decide it
 * with its siblings. A batch that is gone, or never answers, leaves the run decided alone.
 */
async function decidedByBatch(
  run: ExperimentRun,
  batchId: string,
  outcome: RunOutcome,
  alone: () => Promise<TagDecision>,
): Promise<TagDecision> {
  mark(run, 'evaluating', `waiting for batch ${batchId} to decide`);
  publish(run);
  try {
    await getExternalWorkflowHandle(batchId).signal(batchMemberEndedSignal, {
      outcome,
      metric: run.snapshot.metricPolicy,
    });
  } catch {
    return alone();
  }
  if (await condition(() => run.batchDecision !== undefined, BATCH_DECISION_WAIT)) return run.batchDecision!;
  return alone();
}
