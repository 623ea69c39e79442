import crypto from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { CatalogView } from './catalog.js';
import { DEFAULT_REGRESSION_THRESHOLD, promotionWorkflowId, type PromotionCode } from '../domain/promotion.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import { promotionContent, type PromotionInput } from '../workflows/promotion-definitions.js';
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
