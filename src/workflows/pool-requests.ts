import { getExternalWorkflowHandle, log, setHandler, uuid4 } from '@temporalio/workflow';
import { poolLoads } from '../domain/fair-share.js';
import { boundPlacementRecord, planQueue, type Grant, type QueuePlan, type SlotView } from '../domain/placement.js';
import { leaseGrantedSignal, releaseLeaseSignal, requestLeaseSignal, type SlotEntry } from './definitions.js';
import type { PoolState } from './pool-state.js';

/** Requests and releases: a request joins the queue once; a release frees its lease or its place in the queue. */
export function installRequests(state: PoolState): void {
  setHandler(requestLeaseSignal, ({ experimentId, requirements, priority, tag, datasets, holdSeconds }) => {
    const { pool } = state;
    const holds = pool.slots.some((entry) => entry.lease?.experimentId === experimentId);
    if (holds || pool.queue.some((request) => request.experimentId === experimentId)) return;
    pool.queue.push({
      experimentId,
      requirements,
      priority,
      enqueuedAt: Date.now(),
      datasets: datasets ?? [],
      ...(tag !== undefined ? { tag } : {}),
      ...(holdSeconds !== undefined ? { holdSeconds } : {}),
    });
    state.touch();
  });
  setHandler(releaseLeaseSignal, ({ experimentId }) => {
    state.pool.queue = state.pool.queue.filter((request) => request.experimentId !== experimentId);
    for (const entry of state.pool.slots) if (entry.lease?.experimentId === experimentId) state.endLease(entry);
    state.touch();
  });
}

/** The pool's slots as placement sees them: state, drain, when each lease ends at the latest, local data. */
export function slotViews(state: PoolState): SlotView[] {
  const { pool } = state;
  return pool.slots.map((entry) => ({
    ...entry.slot,
    state: !state.isOnline(entry) ? 'offline' : entry.lease ? 'leased' : 'idle',
    draining: entry.draining,
    leaseEndsBy: entry.lease?.endsBy ?? null,
    localDatasets: pool.hosts[entry.slot.host]?.datasets ?? [],
  }));
}

/**
 * One grant pass as placement plans it (domain/placement.ts planQueue): the grants, the GPUs held
 * for requests that wait (reservations), and why each waits. The pool query answers the same plan.
 */
export function planOf(state: PoolState, now: number): QueuePlan {
  const { pool } = state;
  return planQueue(slotViews(state), pool.queue, pool.policy, now, poolLoads(pool, now));
}

/**
 * The slots a grant names, when every one is free, online and on one host (a gang is one host's
 * GPUs); null otherwise. Placement only grants such sets: this keeps a mistake there from ever
 * splitting a gang or sharing a GPU.
 */
function grantable(state: PoolState, grant: Grant): SlotEntry[] | null {
  const entries = grant.slotIds.map((id) => state.pool.slots.find((entry) => entry.slot.slotId === id));
  const lead = entries[0];
  if (!lead || grant.slotIds[0] !== grant.slotId || new Set(grant.slotIds).size !== entries.length) return null;
  const usable = (entry: SlotEntry | undefined): entry is SlotEntry =>
    entry !== undefined && entry.lease === null && state.isOnline(entry) && entry.slot.host === lead.slot.host;
  return entries.every(usable) ? entries : null;
}

/**
 * Grants: queued requests are placed on free slots (fair share between tags orders the queue).
 * A gang's leases are taken together, here, in one workflow task: all of its slots or none.
 * Leases are taken synchronously; the winners are told concurrently, one round trip for all, and
 * requests that arrive while the grants travel are placed at once, not after the grants land.
 */
export function grantQueued(state: PoolState, now: number): void {
  const { pool } = state;
  const grants = planOf(state, now).grants.flatMap((grant) => {
    const entries = grantable(state, grant);
    if (!entries) {
      log.error('placement named a set that cannot be leased; the request waits', { ...grant, record: undefined });
      return [];
    }
    const request = pool.queue.find((r) => r.experimentId === grant.experimentId);
    const lease = {
      leaseId: uuid4(),
      experimentId: grant.experimentId,
      hostQueue: pool.hosts[entries[0]!.slot.host]!.hostQueue,
      grantedAt: now,
      ...(request?.tag !== undefined ? { tag: request.tag } : {}),
    };
    const entryLease = {
      ...lease,
      ...(entries.length > 1 ? { slotIds: grant.slotIds } : {}),
      ...(request?.holdSeconds !== undefined ? { endsBy: now + request.holdSeconds * 1000 } : {}),
    };
    for (const entry of entries) entry.lease = entryLease;
    pool.queue = pool.queue.filter((r) => r.experimentId !== grant.experimentId);
    pool.leasesGranted++;
    // Seen by an orchestrator run with EXPCTL_LOG_LEVEL=DEBUG (and by the atomic-grant test).
    log.debug('lease granted', { experimentId: grant.experimentId, leaseId: lease.leaseId, slots: grant.slotIds });
    return [{ grant, entries, lease }];
  });
  for (const { grant, entries, lease } of grants) {
    state.track(
      (async () => {
        try {
          const fencing = pool.hosts[entries[0]!.slot.host]?.fencing;
          await getExternalWorkflowHandle(grant.experimentId).signal(leaseGrantedSignal, {
            ...lease,
            ...(fencing ? { fencing } : {}),
            slot: entries[0]!.slot,
            slots: entries.map((entry) => entry.slot),
            // Bounded: a grant's size (and this history's growth) does not grow with the fleet.
            placement: boundPlacementRecord(grant.record),
          });
        } catch {
          // The experiment ended while waiting: the slots go back.
          for (const entry of state.entriesOf(lease.leaseId)) entry.lease = null; // never ran: no GPU time
          state.touch();
        }
      })(),
    );
  }
}
