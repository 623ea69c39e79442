import { setHandler } from '@temporalio/workflow';
import { placementCheck } from '../domain/placement.js';
import {
  hostRegistrationQuery,
  leaseHeldQuery,
  leasesHeldQuery,
  onlineHostsQuery,
  placementCheckQuery,
  placementViewQuery,
  poolPlanQuery,
  poolStateQuery,
  successorQuery,
} from './definitions.js';
import { planOf, successorOf } from './pool-requests.js';
import type { PoolState } from './pool-state.js';

/** The pool's answers: its whole state, and the small questions asked often (bytes, not the state). */
export function installQueries(state: PoolState): void {
  const { pool } = state;
  setHandler(poolStateQuery, () => pool);
  setHandler(poolPlanQuery, () => {
    const at = Date.now();
    const { reservations, waiting } = planOf(state, at);
    return { reservations, waiting, at };
  });
  setHandler(placementCheckQuery, (requirements) =>
    placementCheck(
      pool.slots.map((entry) => entry.slot),
      pool.hosts,
      requirements,
      pool.policy,
    ),
  );
  setHandler(placementViewQuery, () => ({
    slots: pool.slots.map((entry) => entry.slot),
    hosts: Object.fromEntries(
      Object.values(pool.hosts).map((host) => [host.host, { online: host.online, hostQueue: host.hostQueue }]),
    ),
    policy: pool.policy,
    heartbeatLimitMs: pool.heartbeatLimitMs,
  }));
  setHandler(hostRegistrationQuery, (host) => ({
    online: pool.hosts[host]?.online ?? false,
    incarnation: pool.hosts[host]?.incarnation ?? null,
    refusal: pool.refusals?.[host] ?? null,
  }));
  setHandler(onlineHostsQuery, () =>
    Object.values(pool.hosts)
      .filter((entry) => entry.online)
      .map((entry) => ({ host: entry.host, hostQueue: entry.hostQueue })),
  );
  setHandler(leaseHeldQuery, (question) => leaseHeldIn(state, question));
  setHandler(leasesHeldQuery, (questions) => questions.map((question) => leaseHeldIn(state, question)));
  setHandler(successorQuery, (leaseId) => successorOf(state, leaseId));
}

/**
 * Whether the pool holds a lease on a slot of an online host. A lined-up run's lease stands too: its
 * worker may have been handed the slot, unseen by the pool. null: a pool started again empty knows
 * no slot until its host registers, and its runs are not stopped for that.
 */
function leaseHeldIn({ pool }: PoolState, { slotId, leaseId }: { slotId: string; leaseId: string }): boolean | null {
  const entry = pool.slots.find((e) => e.slot.slotId === slotId);
  if (!entry) return null;
  const named = entry.lease?.leaseId === leaseId || entry.next?.lease.leaseId === leaseId;
  return named && (pool.hosts[entry.slot.host]?.online ?? false);
}
