import { condition } from '@temporalio/workflow';
import { pinnedRef } from '../../domain/dataset-refs.js';
import type { LeaseRequestInput } from '../../domain/lease-request.js';
import { LEASE_REQUEST_RENEWAL_MS, leaseHoldSeconds } from '../../domain/limits.js';
import type { ExperimentRequest } from '../../domain/request.js';
import { SA } from '../../shared/search-attributes.js';
import type { Lease, LeaseAnswer } from '../definitions.js';
import { control, localControl, patchKeeper } from './activities.js';
import { mark, nextRecord, publish, RunEnded, setAttribute, type ExperimentRun } from './state.js';

type Requirements = ExperimentRequest['requirements'];

/**
 * Joins the pool's queue for a lease (the state is `queued`, also when a run is re-placed): one
 * local step records the state and asks the pool, which answers with the lease when a slot is
 * free; otherwise the grant comes by signal. `lost`: why the last attempt's host was lost, when
 * the run is placed again.
 */
export async function acquire(
  run: ExperimentRun,
  note?: string,
  requirements: Requirements = run.request.requirements,
  lost?: string,
): Promise<Lease> {
  mark(run, 'queued', note);
  const patch = run.patchToKeep;
  const record = nextRecord(run, 'queued');
  // The `running` record a grant in the answer writes: the next revision, the timeline's next state.
  const onGrant = {
    revision: run.revision + 1,
    seq: run.snapshot.timeline.length,
    attempts: run.snapshot.attempts + 1,
  };
  const answer = await localControl.enqueueRun({
    record,
    ...(patch ? { patch: { sha256: patch.sha256 } } : {}),
    lease: leaseAsk(run, requirements),
    onGrant,
  });
  if ('lease' in answer) run.revision = Math.max(run.revision, onGrant.revision);
  take(run, answer);
  run.patchToKeep = undefined;
  // The fleet store could not give the patch: its validating host is asked for it.
  if (patch && !answer.patchKept) await patchKeeper.storePatch(patch);
  if (run.lease === undefined) publish(run);
  if (lost !== undefined) await awaitLiveHost(run, lost, requirements);
  // Asked again now and then (the pool ignores a request it holds): a pool started again after it
  // was gone (terminated by hand) knows nothing of the runs that were waiting in its queue.
  while (!(await condition(() => run.lease !== undefined, LEASE_REQUEST_RENEWAL_MS)))
    await askAgain(run, requirements).catch(() => undefined);
  const granted = run.lease!;
  run.snapshot.placement = granted.placement;
  run.snapshot.gpu = granted.slot.slotId;
  // A gang's every GPU, lead first (absent for a 1-GPU run, whose snapshot stays as it was).
  if (granted.slots.length > 1) run.snapshot.gpus = granted.slots.map((slot) => slot.slotId);
  else delete run.snapshot.gpus;
  run.snapshot.worker = granted.slot.host;
  setAttribute(run, { key: SA.worker, value: granted.slot.host });
  run.pending.placement = granted.placement;
  return granted;
}

/** The pool's answer, taken as a grant would be (a grant by signal may have come first). */
function take(run: ExperimentRun, answer: LeaseAnswer): void {
  if ('lease' in answer && !run.lease && run.snapshot.status === 'queued') run.lease = answer.lease;
}

async function askAgain(run: ExperimentRun, requirements: Requirements): Promise<void> {
  take(run, await localControl.requestLease(leaseAsk(run, requirements)));
}

/** One ask of the pool (counted: a run that never asked has nothing to release). */
function leaseAsk(run: ExperimentRun, requirements: Requirements): LeaseRequestInput {
  const { experimentId, request, input, snapshot } = run;
  run.leaseAsks++;
  return {
    experimentId,
    requirements,
    priority: input.priority,
    tag: request.tag,
    holdSeconds: leaseHoldSeconds(request),
    // Locality: a pinned version is laid out on a host as NAME@V, the name its registration lists.
    datasets: request.datasets.map((ref) => {
      const pinned = snapshot.datasetVersions?.find((p) => p.ref === ref);
      return pinned ? pinnedRef(pinned) : ref;
    }),
  };
}

/**
 * A re-placed run waits only while a live host could take it: its only capable host may be the
 * one that died. No registered slot can ever take it: it ends at once; none online: it waits the
 * pool's heartbeat limit for one to register (a restarting worker does), then ends worker_lost.
 */
async function awaitLiveHost(run: ExperimentRun, lost: string, requirements: Requirements): Promise<void> {
  for (let noneLive = false; ; ) {
    if (run.lease !== undefined) return;
    const check = await control.checkReplacement(requirements);
    if (check.refusal !== null)
      throw new RunEnded('worker_lost', `${lost}; no host in the fleet can take it again: ${check.refusal}`);
    if (check.liveCapable === 0 && noneLive)
      throw new RunEnded(
        'worker_lost',
        `${lost}; re-placed, but no live host could take it within ${Math.round(check.waitMs / 1000)} s (the pool's heartbeat limit)`,
      );
    noneLive = check.liveCapable === 0;
    if (await condition(() => run.lease !== undefined, check.waitMs)) return;
  }
}
