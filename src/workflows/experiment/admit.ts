import { ApplicationFailure, workflowInfo } from '@temporalio/workflow';
import { PERMISSION_DENIED } from '../../domain/authorization.js';
import { isPromotionId } from '../../domain/promotion.js';
import { localAuthorizer, requirePermission } from '../authorize.js';
import type { ExperimentRun } from './state.js';

/**
 * Who submitted the run, checked before anything is recorded or placed: a refused run fails the
 * workflow with the named error.
 */
export async function admit(run: ExperimentRun): Promise<void> {
  const submittedBy = run.evaluation ? evaluationRequester(run) : await signedSubmitter(run);
  run.snapshot.submittedBy = submittedBy;
  run.pending.submittedBy = submittedBy;
}

/**
 * A promotion's holdout evaluation is authorized by its parent, the promotion workflow (which
 * verified the promoter's signature); only a workflow can start a child, so no client can forge it.
 */
function evaluationRequester(run: ExperimentRun): string {
  const parent = workflowInfo().parent?.workflowId;
  if (parent === undefined || !isPromotionId(parent))
    throw ApplicationFailure.nonRetryable(
      `permission_denied: an evaluation run is started only by a promotion workflow, not ${parent ? `by ${parent}` : 'by a client'}`,
      PERMISSION_DENIED,
    );
  return run.input.submittedBy ?? parent;
}

async function signedSubmitter(run: ExperimentRun): Promise<string> {
  const { input, experimentId, request } = run;
  const identity = await requirePermission(
    {
      authorization: input.authorization,
      action: 'submit',
      target: experimentId,
      content: {
        experimentId,
        request,
        priority: input.priority,
        ...(input.origin ? { origin: input.origin } : {}),
        ...(input.batch ? { batch: input.batch } : {}),
        // Signed with the rest: which run's checkpoints a retry restores is the submitter's choice.
        ...(input.resumeFrom ? { resumeFrom: input.resumeFrom } : {}),
      },
      acceptedAt: workflowInfo().startTime.toISOString(),
    },
    localAuthorizer,
  );
  return identity.name;
}
