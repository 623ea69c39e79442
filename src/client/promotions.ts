import crypto from 'node:crypto';
import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { CatalogView } from './catalog.js';
import { DEFAULT_REGRESSION_THRESHOLD, promotionWorkflowId, type PromotionCode } from '../domain/promotion.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import {
  decidePromotionUpdate,
  promotionContent,
  promotionStateQuery,
  rollbackTarget,
  type PromotionInput,
  type PromotionSnapshot,
} from '../workflows/promotion-definitions.js';
import { rollbackWorkflow } from '../workflows/rollback.js';
import { promotionWorkflow } from '../workflows/promotion.js';
import { signAs } from './sign.js';

export interface PromotionSpec {
  experimentId: string;
  model: string;
  alias: string;
  artifact?: string;
  threshold?: number;
  approval?: boolean;
  approvalTimeoutMs: number;
  evalCommand?: string[];
}

/** A fresh suffix: time-ordered, then random (like an experiment ID's). */
export function idSuffix(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `${stamp}-${crypto.randomBytes(3).toString('hex')}`;
}

/**
 * Starts a signed promotion, after the same candidate checks the workflow makes (read from the
 * catalog), so a candidate that cannot qualify is refused before anything runs.
 */
export async function startPromotion(
  client: Client,
  catalog: CatalogView,
  spec: PromotionSpec,
): Promise<
  | { promotionId: string; handle: WorkflowHandle<typeof promotionWorkflow> }
  | { refusal: { code: PromotionCode; reason: string } }
> {
  const prepared = await catalog.promotionCandidate({
    experimentId: spec.experimentId,
    model: spec.model,
    alias: spec.alias,
    ...(spec.artifact !== undefined ? { artifact: spec.artifact } : {}),
  });
  if ('refusal' in prepared) return prepared;
  const promotionId = promotionWorkflowId(spec.model, idSuffix());
  const request = promotionContent({
    promotionId,
    model: spec.model,
    alias: spec.alias,
    experimentId: spec.experimentId,
    ...(spec.artifact !== undefined ? { artifact: spec.artifact } : {}),
    threshold: spec.threshold ?? DEFAULT_REGRESSION_THRESHOLD,
    approval: spec.approval === true,
    approvalTimeoutMs: spec.approvalTimeoutMs,
    ...(spec.evalCommand !== undefined ? { evalCommand: spec.evalCommand } : {}),
  });
  const input: PromotionInput = {
    ...request,
    requestedAt: new Date().toISOString(),
    authorization: signAs('promote', promotionId, request),
  };
  const handle = await client.workflow.start(promotionWorkflow, {
    workflowId: promotionId,
    taskQueue: CONTROL_TASK_QUEUE,
    args: [input],
    workflowIdReusePolicy: 'REJECT_DUPLICATE',
    typedSearchAttributes: [
      { key: SA.model, value: spec.model },
      { key: SA.alias, value: spec.alias },
      { key: SA.status, value: 'running' },
    ],
  });
  return { promotionId, handle };
}

/** A promotion's state, or undefined when there is no such promotion (or Temporal dropped it). */
export async function promotionState(client: Client, promotionId: string): Promise<PromotionSnapshot | undefined> {
  try {
    return await client.workflow.getHandle(promotionId).query(promotionStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}

/** An operator's signed approval or rejection of a promotion that waits for one. */
export async function decidePromotion(
  client: Client,
  promotionId: string,
  content: { decision: 'approve' | 'reject'; reason?: string },
) {
  return client.workflow.getHandle(promotionId).executeUpdate(decidePromotionUpdate, {
    args: [{ ...content, authorization: signAs('approve_promotion', promotionId, content) }],
  });
}

/** An operator's signed rollback of a model's alias to its previous version; waits for the answer. */
export async function rollbackModel(client: Client, request: { model: string; alias: string; reason?: string }) {
  const requestId = `expctl-rollback-${request.model}-${request.alias}-${idSuffix()}`;
  const content = { requestId, model: request.model, alias: request.alias, reason: request.reason ?? null };
  return client.workflow.execute(rollbackWorkflow, {
    workflowId: requestId,
    taskQueue: CONTROL_TASK_QUEUE,
    args: [
      {
        requestId,
        model: request.model,
        alias: request.alias,
        ...(request.reason !== undefined ? { reason: request.reason } : {}),
        requestedAt: new Date().toISOString(),
        authorization: signAs('rollback_model', rollbackTarget(request.model, request.alias), content),
      },
    ],
    typedSearchAttributes: [
      { key: SA.model, value: request.model },
      { key: SA.alias, value: request.alias },
    ],
  });
}
