import { CancellationScope, isCancellation } from '@temporalio/workflow';
import { PROMOTION_CODES } from '../../domain/promotion.js';
import type { PromotionResult } from '../promotion-definitions.js';
import { now, PromotionEnded, record, setStatus, type PromotionRun } from './state.js';

/**
 * How a promotion that did not move its alias ended: the stage's own code and reason. A cancel
 * (from the Web UI or `temporal workflow cancel`) is recorded before the workflow ends canceled.
 */
export async function endedEarly(run: PromotionRun, error: unknown): Promise<PromotionEnded> {
  if (isCancellation(error)) {
    await CancellationScope.nonCancellable(async () => {
      setStatus(run, 'failed');
      run.snapshot.code = PROMOTION_CODES.canceled;
      run.snapshot.reason = 'the promotion workflow was canceled before the alias moved';
      run.snapshot.endedAt = now();
      await record(run);
    });
    throw error;
  }
  if (!(error instanceof PromotionEnded)) throw error;
  return error;
}

/** Records the end and returns the promoter's result. */
export async function finish(run: PromotionRun, ended: PromotionEnded): Promise<PromotionResult> {
  const { input, snapshot } = run;
  setStatus(run, ended.status);
  snapshot.code = ended.code;
  snapshot.reason = ended.reason;
  snapshot.endedAt = now();
  await record(run);
  return {
    promotion_id: input.promotionId,
    model: input.model,
    alias: input.alias,
    experiment_id: input.experimentId,
    status: ended.status,
    code: ended.code,
    reason: ended.reason,
    version: snapshot.version,
    metric_name: snapshot.metric?.name ?? null,
    candidate_metric: snapshot.candidateMetric,
    incumbent_version: snapshot.incumbentVersion,
    incumbent_metric: snapshot.incumbentMetric,
    threshold: input.threshold,
    holdout_experiment_id: snapshot.holdoutExperimentId,
    requested_by: snapshot.requestedBy,
    decided_by: snapshot.decidedBy,
  };
}
