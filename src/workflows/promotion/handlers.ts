import { ApplicationFailure, condition, setHandler, workflowInfo } from '@temporalio/workflow';
import { PROMOTION_CODES } from '../../domain/promotion.js';
import { requirePermission } from '../authorize.js';
import { decidePromotionUpdate, promotionContent, promotionStateQuery } from '../promotion-definitions.js';
import type { PromotionRun } from './state.js';

/** What the promotion answers while it lives: its state, and an approver's signed decision. */
export function listen(run: PromotionRun): void {
  const { snapshot } = run;
  const { promotionId } = run.input;
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
      if (snapshot.status !== 'awaiting_approval' || run.approval)
        throw ApplicationFailure.nonRetryable(
          `${promotionId} is ${snapshot.status}, not awaiting approval`,
          PROMOTION_CODES.notAwaitingApproval,
        );
      run.approval = { decision, by: identity.name, ...(reason !== undefined ? { reason } : {}) };
      await condition(() => snapshot.endedAt !== null || snapshot.status !== 'awaiting_approval');
      return { status: snapshot.status, decidedBy: identity.name };
    },
    {
      validator: (_request) => {
        if (snapshot.status !== 'awaiting_approval' || run.approval)
          throw new Error(`${promotionId} is ${snapshot.status}, not awaiting approval`);
      },
    },
  );
}

/** Who asked for the promotion; refused before anything is recorded (the workflow fails with permission_denied). */
export async function admit(run: PromotionRun): Promise<string> {
  const { input } = run;
  const identity = await requirePermission({
    authorization: input.authorization,
    action: 'promote',
    target: input.promotionId,
    content: promotionContent(input),
    acceptedAt: workflowInfo().startTime.toISOString(),
    detail: `${input.model}@${input.alias} from ${input.experimentId}`,
  });
  run.snapshot.requestedBy = identity.name;
  return identity.name;
}
