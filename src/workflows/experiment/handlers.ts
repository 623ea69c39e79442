import { setHandler, sleep } from '@temporalio/workflow';
import { requirePermission } from '../authorize.js';
import {
  batchDecisionSignal,
  cancelExperimentUpdate,
  experimentStateQuery,
  leaseGrantedSignal,
  leaseRevokedSignal,
} from '../definitions.js';
import type { ExperimentRun } from './state.js';

/** What the run answers while it lives: its state, the pool's grants and revocations, a cancel, its batch. */
export function listen(run: ExperimentRun): void {
  const { snapshot } = run;
  setHandler(experimentStateQuery, () => snapshot);
  setHandler(leaseGrantedSignal, (granted) => {
    if (!run.lease && snapshot.status === 'queued') run.lease = granted;
  });
  setHandler(cancelExperimentUpdate, async ({ authorization }) => {
    const identity = await requirePermission({
      authorization,
      action: 'cancel',
      target: run.experimentId,
      acceptedAt: new Date().toISOString(),
      owner: snapshot.submittedBy ?? null,
    });
    run.canceledBy ??= identity;
    run.body.cancel();
    return { canceledBy: identity.name };
  });
  if (run.input.batch) setHandler(batchDecisionSignal, (decision) => void (run.batchDecision ??= decision));
  if (run.input.batch?.deadline) cancelAtDeadline(run, run.input.batch.deadline);
  setHandler(leaseRevokedSignal, (revocation) => {
    if (run.lease?.leaseId !== revocation.leaseId) return;
    run.revoked = revocation;
    run.attemptScope?.cancel();
  });
}

/** A batch's deadline: a run still going then is canceled, and says why. */
function cancelAtDeadline(run: ExperimentRun, deadline: string): void {
  void sleep(Math.max(0, Date.parse(deadline) - Date.now())).then(
    () => {
      if (run.bodyDone) return;
      run.pastDeadline = `the batch's deadline (${deadline}) passed before it finished`;
      run.body.cancel();
    },
    () => undefined,
  );
}
