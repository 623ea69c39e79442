import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { Authorization } from '../domain/authorization.js';
import type { PromotionStage, PromotionStatus } from '../domain/promotion.js';

/** Messages and inputs of the promotion and rollback workflows (pure: workflows and clients import it). */

export interface PromotionRequest {
  promotionId: string;
  model: string;
  alias: string;
  experimentId: string;
  /** The artifact's recorded path (relative to the run's artifact directory); default its only artifact. */
  artifact?: string;
  /** Relative regression threshold (see judgeRegression). */
  threshold: number;
  approval: boolean;
  approvalTimeoutMs: number;
  /** The evaluation command (argv); default the run's own command, told to evaluate by EXPCTL_EVALUATE. */
  evalCommand?: string[];
}

export interface PromotionInput extends PromotionRequest {
  requestedAt: string;
  /** The promoter's signed request (action promote on the promotion ID, over the PromotionRequest). */
  authorization?: Authorization;
}

/** What the promoter signs: the request without its transport fields. */
export function promotionContent(input: PromotionInput | PromotionRequest): PromotionRequest {
  return {
    promotionId: input.promotionId,
    model: input.model,
    alias: input.alias,
    experimentId: input.experimentId,
    ...(input.artifact !== undefined ? { artifact: input.artifact } : {}),
    threshold: input.threshold,
    approval: input.approval,
    approvalTimeoutMs: input.approvalTimeoutMs,
    ...(input.evalCommand !== undefined ? { evalCommand: input.evalCommand } : {}),
  };
}

/** The live state of a promotion (the promotionState query; the catalog's promotions row mirrors it). */
export interface PromotionSnapshot {
  promotionId: string;
  model: string;
  alias: string;
  experimentId: string;
  status: PromotionStatus;
  code: string | null;
  reason: string | null;
  stages: PromotionStage[];
  requestedBy: string | null;
  decidedBy: string | null;
  artifact: { path: string; sha256: string } | null;
  metric: { name: string; direction: 'minimize' | 'maximize' } | null;
  holdoutExperimentId: string | null;
  candidateMetric: number | null;
  incumbentVersion: number | null;
  incumbentMetric: number | null;
  threshold: number;
  approval: { required: boolean; timeoutMs: number; deadline: string | null };
  /** The version the alias moved to. */
  version: number | null;
  startedAt: string;
  endedAt: string | null;
}

/** The one JSON object `expctl promote` prints. */
export interface PromotionResult {
  promotion_id: string;
  model: string;
  alias: string;
  experiment_id: string;
  status: PromotionStatus;
  code: string | null;
  reason: string | null;
  version: number | null;
  metric_name: string | null;
  candidate_metric: number | null;
  incumbent_version: number | null;
  incumbent_metric: number | null;
  threshold: number;
  holdout_experiment_id: string | null;
  requested_by: string | null;
  decided_by: string | null;
}

export const promotionStateQuery = defineQuery<PromotionSnapshot>('promotionState');
/** An operator's signed approval or rejection of a promotion awaiting approval. */
export interface ApprovalRequest {
  decision: 'approve' | 'reject';
  reason?: string;
  authorization: Authorization;
}
export const decidePromotionUpdate = defineUpdate<{ status: PromotionStatus; decidedBy: string }, [ApprovalRequest]>(
  'decidePromotion',
);

export interface RollbackInput {
  requestId: string;
  model: string;
  alias: string;
  reason?: string;
  requestedAt: string;
  authorization?: Authorization;
}
export interface RollbackResult {
  rollback_id: string;
  model: string;
  alias: string;
  rolled_back: boolean;
  from: number | null;
  to: number | null;
  code: string | null;
  reason: string;
  by: string;
}
/** The target a rollback is signed for. */
export function rollbackTarget(model: string, alias: string): string {
  return `model:${model}@${alias}`;
}
