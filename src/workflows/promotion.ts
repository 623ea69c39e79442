import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  condition,
  executeChild,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { createPromotionActivities, PromotionCandidate } from '../activities/promotion.js';
import type { createArtifactCheckActivities } from '../activities/artifact-check.js';
import type { PromotionRecord } from '../catalog/models.js';
import type { ExperimentRequest } from '../domain/request.js';
import {
  EVALUATE_ENV,
  EVALUATE_HOLDOUT,
  holdoutExperimentId,
  judgeRegression,
  MODEL_ARTIFACT_ENV,
  PROMOTION_CODES,
  type PromotionCode,
  type PromotionStatus,
  type StageName,
  type StageStatus,
} from '../domain/promotion.js';
import { CONTROL_TASK_QUEUE, hostTaskQueue } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import { requirePermission } from './authorize.js';
import { experimentWorkflow } from './experiment.js';
import {
  decidePromotionUpdate,
  promotionContent,
  promotionStateQuery,
  type PromotionInput,
  type PromotionResult,
  type PromotionSnapshot,
} from './promotion-definitions.js';
import { CONTROL_ACTIVITY } from './control-retry.js';

const promotion = proxyActivities<ReturnType<typeof createPromotionActivities>>(CONTROL_ACTIVITY);
/** How long the host that trained the candidate gets to answer the integrity check. */
const HOST_ANSWER = '60s';

class PromotionEnded extends Error {
  constructor(
    readonly status: PromotionStatus,
    readonly code: PromotionCode,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/**
 * A kept experiment's model through staged gates (BRIEF §8): integrity → holdout evaluation on the
 * fleet (a child experiment) compared with the alias's incumbent → optional approval → the alias
 * moves (compare-and-set). Every stage and the end carry a deterministic code.
 */
export async function promotionWorkflow(input: PromotionInput): Promise<PromotionResult> {
  const { promotionId, model, alias } = input;
  const now = () => new Date().toISOString();
  const snapshot: PromotionSnapshot = {
    promotionId,
    model,
    alias,
    experimentId: input.experimentId,
    status: 'running',
    code: null,
    reason: null,
    stages: [],
    requestedBy: null,
    decidedBy: null,
    artifact: null,
    metric: null,
    holdoutExperimentId: null,
    candidateMetric: null,
    incumbentVersion: null,
    incumbentMetric: null,
    threshold: input.threshold,
    approval: { required: input.approval, timeoutMs: input.approvalTimeoutMs, deadline: null },
    version: null,
    startedAt: workflowInfo().startTime.toISOString(),
    endedAt: null,
  };
  let approval: { decision: 'approve' | 'reject'; by: string; reason?: string } | undefined;
  setHandler(promotionStateQuery, () => snapshot);
  setHandler(
    decidePromotionUpdate,
    async ({ decision, reason, authorization }) => {
      const identity = await requirePermission({
        authorization,
        action: 'approve_promotion',
        target: promotionId,
        content: { decision, ...(reason !== undefined ? { reason } : {}) },
        acceptedAt: new Date().toISOString(),
        detail: `${decision}${reason ? `: ${reason}` : ''}`,
      });
      if (snapshot.status !== 'awaiting_approval' || approval)
        throw ApplicationFailure.nonRetryable(
          `${promotionId} is ${snapshot.status}, not awaiting approval`,
          PROMOTION_CODES.notAwaitingApproval,
        );
      approval = { decision, by: identity.name, ...(reason !== undefined ? { reason } : {}) };
      await condition(() => snapshot.endedAt !== null || snapshot.status !== 'awaiting_approval');
      return { status: snapshot.status, decidedBy: identity.name };
    },
    {
      validator: (_request) => {
        if (snapshot.status !== 'awaiting_approval' || approval)
          throw new Error(`${promotionId} is ${snapshot.status}, not awaiting approval`);
      },
    },
  );

  /** The catalog's row of this promotion, as the snapshot says now. */
  const record = (extra: Partial<PromotionRecord> = {}) =>
    promotion.recordPromotion({
      id: promotionId,
      model,
      alias,
      experimentId: input.experimentId,
      status: snapshot.status,
      code: snapshot.code,
      reason: snapshot.reason,
      candidateMetric: snapshot.candidateMetric,
      incumbentVersion: snapshot.incumbentVersion,
      incumbentMetric: snapshot.incumbentMetric,
      threshold: input.threshold,
      requestedBy: snapshot.requestedBy ?? 'unknown',
      decidedBy: snapshot.decidedBy,
      startedAt: snapshot.startedAt,
      endedAt: snapshot.endedAt,
      artifactPath: snapshot.artifact?.path ?? null,
      artifactSha256: snapshot.artifact?.sha256 ?? null,
      holdoutExperimentId: snapshot.holdoutExperimentId,
      approvalRequired: input.approval,
      stages: snapshot.stages,
      ...extra,
    });
  const stage = async (name: StageName, status: StageStatus, code?: PromotionCode, note?: string) => {
    const existing = snapshot.stages.find((s) => s.name === name);
    const entry = { name, status, at: now(), ...(code ? { code } : {}), ...(note ? { note } : {}) };
    if (existing) Object.assign(existing, entry);
    else snapshot.stages.push(entry);
    await record();
  };
  const setStatus = (status: PromotionStatus) => {
    snapshot.status = status;
    upsertSearchAttributes([{ key: SA.status, value: status }]);
  };

  // Refused before anything is recorded: the workflow fails with permission_denied.
  const identity = await requirePermission({
    authorization: input.authorization,
    action: 'promote',
    target: promotionId,
    content: promotionContent(input),
    acceptedAt: workflowInfo().startTime.toISOString(),
    detail: `${model}@${alias} from ${input.experimentId}`,
  });
  snapshot.requestedBy = identity.name;

  let candidate: PromotionCandidate | undefined;
  let ended: PromotionEnded;
  try {
    const prepared = await promotion.preparePromotion({
      experimentId: input.experimentId,
      model,
      alias,
      ...(input.artifact !== undefined ? { artifact: input.artifact } : {}),
    });
    if ('refusal' in prepared) throw new PromotionEnded('failed', prepared.refusal.code, prepared.refusal.reason);
    candidate = prepared.candidate;
    snapshot.artifact = { path: candidate.artifact.path, sha256: candidate.artifact.sha256 };
    snapshot.metric = candidate.metric;
    snapshot.incumbentVersion = candidate.incumbent?.version ?? null;
    snapshot.incumbentMetric = candidate.incumbent?.holdoutMetric ?? null;

    // 1. Integrity: the bytes on the host that trained it still hash to what the run recorded.
    await stage('integrity', 'running');
    const host = proxyActivities<ReturnType<typeof createArtifactCheckActivities>>({
      taskQueue: hostTaskQueue(candidate.host),
      scheduleToStartTimeout: HOST_ANSWER,
      startToCloseTimeout: '5m',
      retry: { maximumAttempts: 3 },
    });
    let hashed;
    try {
      hashed = await host.hashArtifact({ experimentId: candidate.experimentId, path: candidate.artifact.path });
    } catch (error) {
      if (!(error instanceof ActivityFailure) || isCancellation(error)) throw error;
      throw new PromotionEnded(
        'failed',
        PROMOTION_CODES.artifactMissing,
        `the host ${candidate.host} that holds the artifact did not answer: ${error.cause?.message ?? error.message}`,
      );
    }
    if (hashed.sha256 === null) {
      await stage('integrity', 'failed', PROMOTION_CODES.artifactMissing, hashed.problem ?? undefined);
      throw new PromotionEnded('blocked', PROMOTION_CODES.artifactMissing, hashed.problem ?? 'the artifact is gone');
    }
    if (hashed.sha256 !== candidate.artifact.sha256) {
      const why = `${candidate.artifact.path} now hashes to ${hashed.sha256}, not the ${candidate.artifact.sha256} recorded at the end of ${candidate.experimentId}`;
      await stage('integrity', 'failed', PROMOTION_CODES.integrityMismatch, why);
      throw new PromotionEnded('blocked', PROMOTION_CODES.integrityMismatch, why);
    }
    await stage('integrity', 'passed', undefined, `sha256 ${hashed.sha256}`);

    // 2. Holdout evaluation on the fleet: a child experiment with the candidate's code and config.
    const evaluationId = holdoutExperimentId(promotionId);
    snapshot.holdoutExperimentId = evaluationId;
    await stage('evaluation', 'running', undefined, evaluationId);
    const request: ExperimentRequest = {
      ...candidate.request,
      command: input.evalCommand ?? candidate.request.command,
      env: { ...candidate.request.env, [EVALUATE_ENV]: EVALUATE_HOLDOUT, [MODEL_ARTIFACT_ENV]: hashed.absolutePath },
      hypothesis: `holdout evaluation of ${candidate.experimentId} for ${model}@${alias}`,
      description: `promotion ${promotionId}`,
    };
    delete request.idempotencyKey;
    let evaluated;
    try {
      evaluated = await executeChild(experimentWorkflow, {
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
            submittedBy: identity.name,
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
      await stage('evaluation', 'failed', PROMOTION_CODES.evaluationFailed, why);
      throw new PromotionEnded('failed', PROMOTION_CODES.evaluationFailed, why);
    }
    if (evaluated.status !== 'completed' || evaluated.metric === null) {
      const why = `the holdout evaluation ${evaluationId} ended ${evaluated.status}${evaluated.metric === null ? ` without ${candidate.metric.name}` : ''}: ${evaluated.reason}`;
      await stage('evaluation', 'failed', PROMOTION_CODES.evaluationFailed, why);
      throw new PromotionEnded('failed', PROMOTION_CODES.evaluationFailed, why);
    }
    snapshot.candidateMetric = evaluated.metric;
    const verdict = judgeRegression({
      candidate: evaluated.metric,
      incumbent: snapshot.incumbentMetric,
      direction: candidate.metric.direction,
      threshold: input.threshold,
      metricName: candidate.metric.name,
    });
    const versus =
      snapshot.incumbentVersion === null ? '' : ` (incumbent: ${model} version ${snapshot.incumbentVersion})`;
    if (verdict.regressed) {
      await stage('evaluation', 'failed', PROMOTION_CODES.regression, verdict.reason + versus);
      await promotion.raisePromotionAlert({
        code: PROMOTION_CODES.regression,
        subject: promotionId,
        message: `${model}@${alias}: candidate ${candidate.experimentId} blocked: ${verdict.reason}${versus}`,
        at: now(),
      });
      throw new PromotionEnded('blocked', PROMOTION_CODES.regression, verdict.reason + versus);
    }
    await stage('evaluation', 'passed', undefined, verdict.reason + versus);

    // 3. Optional human approval, with a deadline.
    if (input.approval) {
      const deadline = new Date(Date.now() + input.approvalTimeoutMs).toISOString();
      snapshot.approval.deadline = deadline;
      setStatus('awaiting_approval');
      await stage('approval', 'running', undefined, `until ${deadline}`);
      const answered = await condition(() => approval !== undefined, input.approvalTimeoutMs);
      if (!answered) {
        const why = `no approval within ${Math.round(input.approvalTimeoutMs / 1000)} s (deadline ${deadline})`;
        await stage('approval', 'failed', PROMOTION_CODES.approvalTimeout, why);
        throw new PromotionEnded('rejected', PROMOTION_CODES.approvalTimeout, why);
      }
      snapshot.decidedBy = approval!.by;
      if (approval!.decision === 'reject') {
        const why = `rejected by ${approval!.by}${approval!.reason ? `: ${approval!.reason}` : ''}`;
        await stage('approval', 'failed', PROMOTION_CODES.rejected, why);
        throw new PromotionEnded('rejected', PROMOTION_CODES.rejected, why);
      }
      setStatus('running');
      await stage('approval', 'passed', undefined, `approved by ${approval!.by}`);
    } else await stage('approval', 'skipped');

    // 4. The alias moves, only if it still holds the version the evaluation compared with.
    await stage('alias', 'running');
    const moved = await promotion.moveAliasToCandidate({
      model,
      alias,
      expected: snapshot.incumbentVersion,
      candidate: {
        experimentId: candidate.experimentId,
        artifactPath: candidate.artifact.path,
        artifactSha256: candidate.artifact.sha256,
        promotionId,
        holdoutExperimentId: evaluationId,
        holdoutMetric: evaluated.metric,
        metricName: candidate.metric.name,
        direction: candidate.metric.direction,
      },
      by: snapshot.decidedBy ?? identity.name,
      promotionId,
    });
    if (!moved.moved) {
      await stage('alias', 'failed', moved.code as PromotionCode, moved.reason);
      throw new PromotionEnded('failed', moved.code as PromotionCode, moved.reason);
    }
    snapshot.version = moved.version;
    const movedNote = `${model}@${alias}: version ${moved.previousVersion ?? 'none'} → ${moved.version}`;
    await stage('alias', 'passed', undefined, movedNote);
    ended = new PromotionEnded('promoted', PROMOTION_CODES.promoted, `${movedNote}; ${verdict.reason}`);
  } catch (error) {
    if (isCancellation(error)) {
      // Canceled from the Web UI or `temporal workflow cancel`: the record says so before it ends.
      await CancellationScope.nonCancellable(async () => {
        setStatus('failed');
        snapshot.code = PROMOTION_CODES.canceled;
        snapshot.reason = 'the promotion workflow was canceled before the alias moved';
        snapshot.endedAt = now();
        await record();
      });
      throw error;
    }
    if (!(error instanceof PromotionEnded)) throw error;
    ended = error;
  }

  setStatus(ended.status);
  snapshot.code = ended.code;
  snapshot.reason = ended.reason;
  snapshot.endedAt = now();
  await record();
  return {
    promotion_id: promotionId,
    model,
    alias,
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
