import { condition } from '@temporalio/workflow';
import { PROMOTION_CODES } from '../../domain/promotion.js';
import { failStage, setStatus, stage, type PromotionRun } from './state.js';

/** Stage 3, optional human approval (a signed update), with a deadline; skipped when not asked for. */
export async function approve(run: PromotionRun): Promise<void> {
  const { input, snapshot } = run;
  if (!input.approval) return stage(run, 'approval', 'skipped');
  const deadline = new Date(Date.now() + input.approvalTimeoutMs).toISOString();
  snapshot.approval.deadline = deadline;
  setStatus(run, 'awaiting_approval');
  await stage(run, 'approval', 'running', undefined, `until ${deadline}`);
  const answered = await condition(() => run.approval !== undefined, input.approvalTimeoutMs);
  if (!answered) {
    const why = `no approval within ${Math.round(input.approvalTimeoutMs / 1000)} s (deadline ${deadline})`;
    await failStage(run, 'approval', 'rejected', PROMOTION_CODES.approvalTimeout, why);
  }
  const approval = run.approval!;
  snapshot.decidedBy = approval.by;
  if (approval.decision === 'reject') {
    const why = `rejected by ${approval.by}${approval.reason ? `: ${approval.reason}` : ''}`;
    await failStage(run, 'approval', 'rejected', PROMOTION_CODES.rejected, why);
  }
  setStatus(run, 'running');
  await stage(run, 'approval', 'passed', undefined, `approved by ${approval.by}`);
}
