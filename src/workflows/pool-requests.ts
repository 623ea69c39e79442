import { getExternalWorkflowHandle, setHandler, uuid4 } from '@temporalio/workflow';
import { poolLoads } from '../domain/fair-share.js';
import { assignSlots, boundPlacementRecord, type SlotView } from '../domain/placement.js';
import { leaseGrantedSignal, releaseLeaseSignal, requestLeaseSignal } from './definitions.js';
import type { PoolState } from './pool-state.js';

/** Requests and releases: a request joins the queue once; a release frees its lease or its place in the queue. */
export function installRequests(state: PoolState): void {
  setHandler(requestLeaseSignal, ({ experimentId, requirements, priority, tag, datasets }) => {
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
    });
    state.touch();
  });
  setHandler(releaseLeaseSignal, ({ experimentId }) => {
    state.pool.queue = state.pool.queue.filter((request) => request.experimentId !== experimentId);
    for (const entry of state.pool.slots) if (entry.lease?.experimentId === experimentId) state.endLease(entry);
    state.touch();
  });
}

/**
 * Grants: queued requests are placed on free slots (fair share between tags orders the queue).
 * Leases are taken synchronously; the winners are told concurrently, one round trip for all, and
 * requests that arrive while the grants travel are placed at once, not after the grants land.
 */
export function grantQueued(state: PoolState, now: number): void {
  const { pool } = state;
  const views: SlotView[] = pool.slots.map((entry) => ({
    ...entry.slot,
    state: !state.isOnline(entry) ? 'offline' : entry.lease ? 'leased' : 'idle',
    draining: entry.draining,
    localDatasets: pool.hosts[entry.slot.host]?.datasets ?? [],
  }));
  const grants = assignSlots(views, pool.queue, pool.policy, now, poolLoads(pool, now)).map((grant) => {
    const entry = pool.slots.find((e) => e.slot.slotId === grant.slotId)!;
    const tag = pool.queue.find((request) => request.experimentId === grant.experimentId)?.tag;
    const lease = {
      leaseId: uuid4(),
      experimentId: grant.experimentId,
      hostQueue: pool.hosts[entry.slot.host]!.hostQueue,
      grantedAt: now,
      ...(tag !== undefined ? { tag } : {}),
    };
    entry.lease = lease;
    pool.queue = pool.queue.filter((request) => request.experimentId !== grant.experimentId);
    pool.leasesGranted++;
    return { grant, entry, lease };
  });
  for (const { grant, entry, lease } of grants) {
    state.track(
      (async () => {
        try {
          const fencing = pool.hosts[entry.slot.host]?.fencing;
          await getExternalWorkflowHandle(grant.experimentId).signal(leaseGrantedSignal, {
            ...lease,
            ...(fencing ? { fencing } : {}),
            slot: entry.slot,
            slots: [entry.slot],
            // Bounded: a grant's size (and this history's growth) does not grow with the fleet.
            placement: boundPlacementRecord(grant.record),
          });
        } catch {
          // The experiment ended while waiting: the slot goes back.
          if (entry.lease?.leaseId === lease.leaseId) entry.lease = null; // never ran: no GPU time
          state.touch();
        }
      })(),
    );
  }
}
