import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { createPromotionActivities } from '../activities/promotion.js';
import { requirePermission } from './authorize.js';
import { rollbackTarget, type RollbackInput, type RollbackResult } from './promotion-definitions.js';
import { CONTROL_ACTIVITY } from './control-retry.js';

const promotion = proxyActivities<ReturnType<typeof createPromotionActivities>>(CONTROL_ACTIVITY);

/** An operator's signed rollback: the alias moves back to the version it held before (one transaction). */
export async function rollbackWorkflow(input: RollbackInput): Promise<RollbackResult> {
  const target = rollbackTarget(input.model, input.alias);
  const identity = await requirePermission({
    authorization: input.authorization,
    action: 'rollback_model',
    target,
    content: { requestId: input.requestId, model: input.model, alias: input.alias, reason: input.reason ?? null },
    acceptedAt: workflowInfo().startTime.toISOString(),
    detail: input.reason ?? undefined,
  });
  const moved = await promotion.rollbackAlias({
    model: input.model,
    alias: input.alias,
    by: identity.name,
    reason: input.reason ?? null,
    requestId: input.requestId,
  });
  return {
    rollback_id: input.requestId,
    model: input.model,
    alias: input.alias,
    rolled_back: moved.moved,
    from: moved.moved ? moved.previousVersion : null,
    to: moved.moved ? moved.version : null,
    code: moved.moved ? null : moved.code,
    reason: moved.moved
      ? `${input.model}@${input.alias} rolled back from version ${moved.previousVersion} to ${moved.version} by ${identity.name}${input.reason ? `: ${input.reason}` : ''}`
      : moved.reason,
    by: identity.name,
  };
}
