import { ChildWorkflowFailure, executeChild, isCancellation } from '@temporalio/workflow';
import type { PromotionCandidate } from '../../activities/promotion.js';
import type { ExperimentResult } from '../../domain/experiment.js';
import type { ExperimentRequest } from '../../domain/request.js';
import {
  EVALUATE_ENV,
  EVALUATE_HOLDOUT,
  holdoutExperimentId,
  judgeRegression,
  MODEL_ARTIFACT_ENV,
  PROMOTION_CODES,
} from '../../domain/promotion.js';
import { CONTROL_TASK_QUEUE } from '../../shared/constants.js';
import { SA } from '../../shared/search-attributes.js';
import { experimentWorkflow } from '../experiment.js';
import { failStage, now, promotion, PromotionEnded, stage, type PromotionRun } from './state.js';

/** The holdout evaluation's result: the candidate's metric there, and why it is not a regression. */
export interface Holdout {
  experimentId: string;
  metric: number;
  verdict: string;
}

/**
 * Stage 2, holdout evaluation on the fleet: a child experiment with the candidate's code and
 * config, compared with the alias's incumbent. A regression is blocked and raises an alert.
 */
export async function evaluateHoldout(
  run: PromotionRun,
  candidate: PromotionCandidate,
  artifactPath: string,
  requester: string,
): Promise<Holdout> {
  const { input, snapshot } = run;
  const evaluationId = holdoutExperimentId(input.promotionId);
  snapshot.holdoutExperimentId = evaluationId;
  await stage(run, 'evaluation', 'running', undefined, evaluationId);
  const evaluated = await runEvaluation(run, candidate, artifactPath, requester, evaluationId);
  if (evaluated.status !== 'completed' || evaluated.metric === null) {
    const why = `the holdout evaluation ${evaluationId} ended ${evaluated.status}${evaluated.metric === null ? ` without ${candidate.metric.name}` : ''}: ${evaluated.reason}`;
    await failStage(run, 'evaluation', 'failed', PROMOTION_CODES.evaluationFailed, why);
  }
  const metric = evaluated.metric!;
  snapshot.candidateMetric = metric;
  const verdict = judgeRegression({
    candidate: metric,
    incumbent: snapshot.incumbentMetric,
    direction: candidate.metric.direction,
    threshold: input.threshold,
    metricName: candidate.metric.name,
  });
  const versus =
    snapshot.incumbentVersion === null ? '' : ` (incumbent: ${input.model} version ${snapshot.incumbentVersion})`;
  if (verdict.regressed) {
    await stage(run, 'evaluation', 'failed', PROMOTION_CODES.regression, verdict.reason + versus);
    await promotion.raisePromotionAlert({
      code: PROMOTION_CODES.regression,
      subject: input.promotionId,
      message: `${input.model}@${input.alias}: candidate ${candidate.experimentId} blocked: ${verdict.reason}${versus}`,
      at: now(),
    });
    throw new PromotionEnded('blocked', PROMOTION_CODES.regression, verdict.reason + versus);
  }
  await stage(run, 'evaluation', 'passed', undefined, verdict.reason + versus);
  return { experimentId: evaluationId, metric, verdict: verdict.reason };
}

/** The evaluation as a child experiment (purpose `evaluation`: its tag is not touched). */
async function runEvaluation(
  run: PromotionRun,
  candidate: PromotionCandidate,
  artifactPath: string,
  requester: string,
  evaluationId: string,
): Promise<ExperimentResult> {
  const { promotionId, model, alias } = run.input;
  const request: ExperimentRequest = {
    ...candidate.request,
    command: run.input.evalCommand ?? candidate.request.command,
    env: { ...candidate.request.env, [EVALUATE_ENV]: EVALUATE_HOLDOUT, [MODEL_ARTIFACT_ENV]: artifactPath },
    hypothesis: `holdout evaluation of ${candidate.experimentId} for ${model}@${alias}`,
    description: `promotion ${promotionId}`,
  };
  delete request.idempotencyKey;
  try {
    return await executeChild(experimentWorkflow, {
      workflowId: evaluationId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [
        {
          experimentId: evaluationId,
          request,
          submittedAt: now(),
          priority: 0,
          origin: { kind: 'promotion', of: promotionId },
          purpose: 'evaluation',
          submittedBy: requester,
        },
      ],
      typedSearchAttributes: [
        { key: SA.tag, value: request.tag },
        { key: SA.category, value: request.category },
        { key: SA.status, value: 'submitted' },
        { key: SA.model, value: model },
      ],
    });
  } catch (error) {
    if (!(error instanceof ChildWorkflowFailure) || isCancellation(error)) throw error;
    const why = `the holdout evaluation ${evaluationId} failed: ${error.cause?.message ?? error.message}`;
    return failStage(run, 'evaluation', 'failed', PROMOTION_CODES.evaluationFailed, why);
  }
}
