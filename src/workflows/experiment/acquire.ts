import { condition, upsertSearchAttributes } from '@temporalio/workflow';
import { pinnedRef } from '../../domain/dataset-refs.js';
import { leaseHoldSeconds } from '../../domain/limits.js';
import type { ExperimentRequest } from '../../domain/request.js';
import { SA } from '../../shared/search-attributes.js';
import { requestLeaseSignal, type Lease } from '../definitions.js';
import { control, pool } from './activities.js';
import { advance, RunEnded, type ExperimentRun } from './state.js';

/** How often a queued run asks the pool again for its lease (a re-created pool lost its queue). */
const LEASE_REQUEST_RENEWAL = '30s';

type Requirements = ExperimentRequest['requirements'];

/**
 * Waits in the pool's queue for a lease (the state is `queued`, also when a run is re-placed).
 * `lost`: why the last attempt's host was lost, when the run is placed again.
 */
export async function acquire(
  run: ExperimentRun,
  note?: string,
  requirements: Requirements = run.request.requirements,
  lost?: string,
): Promise<Lease> {
  await advance(run, 'queued', note);
  const requestLease = () => askPool(run, requirements);
  // A pool that is gone for a moment (terminated, being started again) is asked again below.
  await requestLease().catch(() => undefined);
  if (lost !== undefined) await awaitLiveHost(run, lost, requirements);
  // Asked again now and then (the pool ignores a request it holds): a pool started again after it
  // was gone (terminated by hand) knows nothing of the runs that were waiting in its queue.
  while (!(await condition(() => run.lease !== undefined, LEASE_REQUEST_RENEWAL)))
    await requestLease().catch(() => undefined);
  const granted = run.lease!;
  run.snapshot.placement = granted.placement;
  run.snapshot.gpu = granted.slot.slotId;
  // A gang's every GPU, lead first (absent for a 1-GPU run, whose snapshot stays as it was).
  if (granted.slots.length > 1) run.snapshot.gpus = granted.slots.map((slot) => slot.slotId);
  else delete run.snapshot.gpus;
  run.snapshot.worker = granted.slot.host;
  upsertSearchAttributes([{ key: SA.worker, value: granted.slot.host }]);
  run.pending.placement = granted.placement;
  return granted;
}

function askPool(run: ExperimentRun, requirements: Requirements): Promise<void> {
  const { experimentId, request, input, snapshot } = run;
  return pool().signal(requestLeaseSignal, {
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
  });
}

/**
 * A re-placed run waits only while a live host could take it: its only capable host may be the
 * one that died. No registered slot can ever take it: it ends at once; none online: it waits the
 * pool's heartbeat limit for one to register (a restarting worker does), then ends worker_lost.
 */
async function awaitLiveHost(run: ExperimentRun, lost: string, requirements: Requirements): Promise<void> {
  for (let noneLive = false; ; ) {
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
