import {
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  setHandler,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import { assignSlots, DEFAULT_PLACEMENT_POLICY, type SlotView } from '../domain/placement.js';
import {
  configurePoolSignal,
  deregisterHostSignal,
  drainSignal,
  healthReportSignal,
  hostHeartbeatSignal,
  hostLostSignal,
  leaseGrantedSignal,
  leaseHeldQuery,
  leaseRevokedSignal,
  poolStateQuery,
  registerHostSignal,
  releaseLeaseSignal,
  requestLeaseSignal,
  type PoolSnapshot,
  type SlotEntry,
} from './definitions.js';

/** Continue-as-new well before Temporal's limits so thousands of leases keep the history small. */
const HISTORY_EVENTS_LIMIT = 2_000;

export function emptyPool(): PoolSnapshot {
  return {
    hosts: {},
    slots: [],
    queue: [],
    policy: DEFAULT_PLACEMENT_POLICY,
    heartbeatLimitMs: 60_000,
    leasesGranted: 0,
    health: {},
  };
}

/**
 * The single authority for leases. Signals mutate state synchronously (so they never interleave);
 * the main loop grants queued requests and revokes leases of silent hosts.
 */
export async function poolWorkflow(carried?: PoolSnapshot): Promise<void> {
  const pool: PoolSnapshot = { ...emptyPool(), ...carried };
  let dirty = true;
  const touch = () => {
    dirty = true;
  };
  /** Revocations decided in handlers, delivered by the main loop (handlers cannot await). */
  const pendingRevocations: { experimentId: string; leaseId: string; reason: string }[] = [];

  const slotsOf = (host: string) => pool.slots.filter((entry) => entry.slot.host === host);
  /** Revokes the host's leases, except those of runs its worker says it still holds. */
  const revokeHost = (host: string, reason: string, keep: readonly string[] = []) => {
    for (const entry of slotsOf(host)) {
      if (!entry.lease || keep.includes(entry.lease.experimentId)) continue;
      pendingRevocations.push({ experimentId: entry.lease.experimentId, leaseId: entry.lease.leaseId, reason });
      entry.lease = null;
    }
  };
  /** Offline in one step: no lease is granted on the host until its worker registers again. */
  const takeOffline = (host: string, reason: string) => {
    const entry = pool.hosts[host];
    if (entry) {
      entry.online = false;
      entry.offlineReason = reason;
    }
    revokeHost(host, reason);
    touch();
  };

  setHandler(poolStateQuery, () => pool);
  setHandler(leaseHeldQuery, ({ slotId, leaseId }) => {
    const entry = pool.slots.find((e) => e.slot.slotId === slotId);
    return entry?.lease?.leaseId === leaseId && (pool.hosts[entry.slot.host]?.online ?? false);
  });
  // Workers send their registration as their heartbeat: the same incarnation while online is only a
  // heartbeat; anything else (first start, restart, back after being declared offline) registers anew.
  setHandler(registerHostSignal, (registration) => {
    const known = pool.hosts[registration.host];
    if (known?.online && registration.incarnation !== undefined && known.incarnation === registration.incarnation) {
      known.lastHeartbeat = Date.now();
      return;
    }
    // Leases of runs the worker no longer holds belong to processes that died with its predecessor.
    if (known)
      revokeHost(
        registration.host,
        `worker on ${registration.host} restarted or came back; its runs were lost`,
        registration.liveRuns ?? [],
      );
    const previousSlots = new Map(slotsOf(registration.host).map((e) => [e.slot.slotId, e]));
    pool.slots = pool.slots.filter((entry) => entry.slot.host !== registration.host);
    for (const slot of registration.slots) {
      const previous = previousSlots.get(slot.slotId);
      const lease =
        previous?.lease && registration.liveRuns?.includes(previous.lease.experimentId) ? previous.lease : null;
      pool.slots.push({
        slot,
        lease,
        draining: previous?.draining ?? false,
        drainReason: previous?.drainReason ?? null,
        drainedBy: previous?.drainedBy ?? null,
      });
    }
    pool.hosts[registration.host] = {
      host: registration.host,
      hostQueue: registration.hostQueue,
      driverVersion: registration.driverVersion,
      datasets: registration.datasets ?? [],
      software: registration.software ?? {},
      online: true,
      lastHeartbeat: Date.now(),
      registeredAt: Date.now(),
      incarnation: registration.incarnation,
      offlineReason: null,
    };
    touch();
  });
  // Kept for workers that heartbeat without their registration: it never brings an offline host back.
  setHandler(hostHeartbeatSignal, ({ host }) => {
    const entry = pool.hosts[host];
    if (entry?.online) entry.lastHeartbeat = Date.now();
  });
  setHandler(hostLostSignal, ({ host, reason }) => {
    if (pool.hosts[host]?.online) takeOffline(host, reason);
  });
  setHandler(deregisterHostSignal, ({ host }) => takeOffline(host, `worker on ${host} shut down`));
  setHandler(requestLeaseSignal, ({ experimentId, requirements, priority, datasets }) => {
    const holds = pool.slots.some((entry) => entry.lease?.experimentId === experimentId);
    if (holds || pool.queue.some((request) => request.experimentId === experimentId)) return;
    pool.queue.push({ experimentId, requirements, priority, enqueuedAt: Date.now(), datasets: datasets ?? [] });
    touch();
  });
  setHandler(releaseLeaseSignal, ({ experimentId }) => {
    pool.queue = pool.queue.filter((request) => request.experimentId !== experimentId);
    for (const entry of pool.slots) if (entry.lease?.experimentId === experimentId) entry.lease = null;
    touch();
  });
  setHandler(drainSignal, ({ target, drained, reason }) => {
    for (const entry of pool.slots) {
      if (entry.slot.host === target || entry.slot.slotId === target) {
        entry.draining = drained;
        entry.drainReason = drained ? reason : null;
        entry.drainedBy = drained ? 'operator' : null;
      }
    }
    touch();
  });
  setHandler(healthReportSignal, ({ host, report, problems }) => {
    pool.health[host] = { checkedAt: report.checkedAt, problems, report };
    for (const entry of slotsOf(host)) {
      const problem = problems
        .filter((p) => p.slotId === entry.slot.slotId)
        .map((p) => p.reason)
        .join('; ');
      if (problem && entry.drainedBy !== 'operator') {
        entry.draining = true;
        entry.drainReason = `health: ${problem}`;
        entry.drainedBy = 'health';
      } else if (!problem && entry.drainedBy === 'health') {
        entry.draining = false;
        entry.drainReason = null;
        entry.drainedBy = null;
      }
    }
    touch();
  });
  setHandler(configurePoolSignal, ({ heartbeatLimitMs, policy }) => {
    if (heartbeatLimitMs !== undefined && heartbeatLimitMs >= 1000) pool.heartbeatLimitMs = heartbeatLimitMs;
    if (policy) pool.policy = { ...pool.policy, ...policy };
    touch();
  });

  const isOnline = (entry: SlotEntry) => pool.hosts[entry.slot.host]?.online ?? false;
  const nextExpiryMs = () => {
    const online = Object.values(pool.hosts).filter((host) => host.online);
    if (online.length === 0) return undefined;
    const earliest = Math.min(...online.map((host) => host.lastHeartbeat + pool.heartbeatLimitMs));
    return Math.max(1000, earliest - Date.now() + 100);
  };

  let lastWake = Date.now();
  for (;;) {
    const timeout = nextExpiryMs();
    if (timeout === undefined) await condition(() => dirty);
    else await condition(() => dirty, timeout);
    dirty = false;

    const now = Date.now();
    // While any host is online the loop wakes at least once per heartbeat limit. Waking much later
    // means the server (or this workflow) was unavailable, not the hosts: their heartbeats could not
    // arrive. Give every online host a full limit to report again instead of declaring it lost.
    if (now - lastWake > pool.heartbeatLimitMs + 5_000) {
      for (const host of Object.values(pool.hosts))
        if (host.online) host.lastHeartbeat = Math.max(host.lastHeartbeat, now);
      log.warn('pool was unavailable; host heartbeats get a fresh limit', { stalledMs: now - lastWake });
    }
    lastWake = now;
    for (const host of Object.values(pool.hosts)) {
      if (host.online && now - host.lastHeartbeat > pool.heartbeatLimitMs) {
        const last = new Date(host.lastHeartbeat).toISOString();
        takeOffline(
          host.host,
          `no heartbeat from ${host.host} for ${Math.round((now - host.lastHeartbeat) / 1000)}s (last at ${last}); the worker is lost`,
        );
        log.warn('host went offline', { host: host.host });
      }
    }
    await Promise.all(
      pendingRevocations.splice(0).map(
        (revocation) =>
          getExternalWorkflowHandle(revocation.experimentId)
            .signal(leaseRevokedSignal, { leaseId: revocation.leaseId, reason: revocation.reason })
            .catch(() => undefined), // the experiment already ended: nothing to tell
      ),
    );

    const views: SlotView[] = pool.slots.map((entry) => ({
      ...entry.slot,
      state: !isOnline(entry) ? 'offline' : entry.lease ? 'leased' : 'idle',
      draining: entry.draining,
      localDatasets: pool.hosts[entry.slot.host]?.datasets ?? [],
    }));
    // Leases are taken synchronously; the winners are told concurrently, one round trip for all.
    const grants = assignSlots(views, pool.queue, pool.policy, now).map((grant) => {
      const entry = pool.slots.find((e) => e.slot.slotId === grant.slotId)!;
      const lease = {
        leaseId: uuid4(),
        experimentId: grant.experimentId,
        hostQueue: pool.hosts[entry.slot.host]!.hostQueue,
        grantedAt: now,
      };
      entry.lease = lease;
      pool.queue = pool.queue.filter((request) => request.experimentId !== grant.experimentId);
      pool.leasesGranted++;
      return { grant, entry, lease };
    });
    await Promise.all(
      grants.map(async ({ grant, entry, lease }) => {
        try {
          await getExternalWorkflowHandle(grant.experimentId).signal(leaseGrantedSignal, {
            ...lease,
            slot: entry.slot,
            placement: grant.record,
          });
        } catch {
          // The experiment ended while waiting: the slot goes back.
          if (entry.lease?.leaseId === lease.leaseId) entry.lease = null;
          dirty = true;
        }
      }),
    );

    if (workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > HISTORY_EVENTS_LIMIT) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof poolWorkflow>(pool);
    }
  }
}
