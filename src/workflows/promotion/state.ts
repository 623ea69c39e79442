import { proxyActivities, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { createPromotionActivities } from '../../activities/promotion.js';
import type { PromotionRecord } from '../../catalog/models.js';
import type { PromotionCode, PromotionStatus, StageName, StageStatus } from '../../domain/promotion.js';
import { SA } from '../../shared/search-attributes.js';
import { CONTROL_ACTIVITY } from '../control-retry.js';
import type { PromotionInput, PromotionSnapshot } from '../promotion-definitions.js';

export const promotion = proxyActivities<ReturnType<typeof createPromotionActivities>>(CONTROL_ACTIVITY);

/** The one state every stage of a promotion reads and moves. */
export interface PromotionRun {
  readonly input: PromotionInput;
  /** What the state query shows and the catalog's row records. */
  readonly snapshot: PromotionSnapshot;
  /** An approver's answer, once the decide update has given one. */
  approval?: { decision: 'approve' | 'reject'; by: string; reason?: string };
}

/** How a promotion ended, with its deterministic code: thrown by any stage that ends it early. */
export class PromotionEnded extends Error {
  constructor(
    readonly status: PromotionStatus,
    readonly code: PromotionCode,
    readonly reason: string,
  ) {
    super(reason);
  }
}

export const now = () => new Date().toISOString();

export function newPromotion(input: PromotionInput): PromotionRun {
  return {
    input,
    snapshot: {
      promotionId: input.promotionId,
      model: input.model,
      alias: input.alias,
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
    },
  };
}

/** The catalog's row of this promotion, as the snapshot says now. */
export function record(run: PromotionRun, extra: Partial<PromotionRecord> = {}) {
  const { input, snapshot } = run;
  return promotion.recordPromotion({
    id: input.promotionId,
    model: input.model,
    alias: input.alias,
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
}

/** Sets a stage's status (with its code and note) and records it. */
export async function stage(
  run: PromotionRun,
  name: StageName,
  status: StageStatus,
  code?: PromotionCode,
  note?: string,
): Promise<void> {
  const existing = run.snapshot.stages.find((s) => s.name === name);
  const entry = { name, status, at: now(), ...(code ? { code } : {}), ...(note ? { note } : {}) };
  if (existing) Object.assign(existing, entry);
  else run.snapshot.stages.push(entry);
  await record(run);
}

/** Records a stage as failed and ends the promotion with the same code and reason. */
export async function failStage(
  run: PromotionRun,
  name: StageName,
  status: PromotionStatus,
  code: PromotionCode,
  why: string,
): Promise<never> {
  await stage(run, name, 'failed', code, why);
  throw new PromotionEnded(status, code, why);
}

export function setStatus(run: PromotionRun, status: PromotionStatus): void {
  run.snapshot.status = status;
  upsertSearchAttributes([{ key: SA.status, value: status }]);
}
