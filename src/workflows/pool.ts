import {
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setHandler,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import { addUsage, poolLoads, pruneUsage } from '../domain/fair-share.js';
import {
  assignSlots,
  boundPlacementRecord,
  DEFAULT_PLACEMENT_POLICY,
  placementCheck,
  type SlotView,
} from '../domain/placement.js';
import {
  configurePoolUpdate,
  deregisterHostSignal,
  drainUpdate,
  healthReportSignal,
  hostLostSignal,
  leaseGrantedSignal,
  leaseHeldQuery,
  leaseRevokedSignal,
  poolStateQuery,
  placementCheckQuery,
  placementViewQuery,
  onlineHostsQuery,
  hostRegistrationQuery,
  registerHostSignal,
  releaseLeaseSignal,
  requestLeaseSignal,
  type PoolSnapshot,
  type HostEntry,
  type SlotEntry,
} from './definitions.js';
import { PERMISSION_DENIED } from '../domain/authorization.js';
import { drainOutcome, silenceLimitMs, type HostRegistration } from '../domain/fleet.js';
import { DEFAULT_HEARTBEAT_LIMIT_MS, HISTORY_EVENTS_LIMIT } from '../domain/limits.js';
import { authorizer, requirePermission } from './authorize.js';
import { CONTROL_ACTIVITY } from './control-retry.js';
import type { createLeaseHolderActivities } from '../activities/lease-holders.js';

/** Or this many bytes, whichever comes first: a busy fleet's events are larger than an idle one's. */
const HISTORY_BYTES_LIMIT = 1 << 20;

/** The pool's question about its leases' holders (lease-holders.ts), on the control worker. */
const holders = proxyActivities<ReturnType<typeof createLeaseHolderActivities>>({
  ...CONTROL_ACTIVITY,
  retry: { initialInterval: '1s', maximumAttempts: 3 },
});

/**
 * How often the pool checks that its leases' holders still run: half its heartbeat limit (at
 * least 2 s, at most 30 s), so a terminated holder's slot is free within the limit.
 */
export function holderCheckMs(heartbeatLimitMs: number): number {
  return Math.min(30_000, Math.max(2_000, Math.floor(heartbeatLimitMs / 2)));
}

export function emptyPool(): PoolSnapshot {
  return {
    hosts: {},
    slots: [],
    queue: [],
    policy: DEFAULT_PLACEMENT_POLICY,
    heartbeatLimitMs: DEFAULT_HEARTBEAT_LIMIT_MS,
    leasesGranted: 0,
    health: {},
    refusals: {},
  };
}

/**
 * The single authority for leases. Signals mutate state synchronously (so they never interleave);
 * the main loop grants queued requests and revokes leases of silent hosts.
 */
export async function poolWorkflow(carried?: Partial<PoolSnapshot>): Promise<void> {
  const pool: PoolSnapshot = { ...emptyPool(), ...carried };
  let dirty = true;
  const touch = () => {
    dirty = true;
  };
  /** Revocations decided in handlers, delivered by the main loop (handlers cannot await). */
  const pendingRevocations: { experimentId: string; leaseId: string; reason: string }[] = [];

  const slotsOf = (host: string) => pool.slots.filter((entry) => entry.slot.host === host);
  /** Frees the slot; the lease's GPU time goes to its tag's recent use (fair share). */
  const endLease = (entry: SlotEntry) => {
    const lease = entry.lease;
    entry.lease = null;
    if (lease?.tag === undefined) return;
    const now = Date.now();
    pool.usage = { ...pool.usage, [lease.tag]: addUsage(pool.usage?.[lease.tag], (now - lease.grantedAt) / 1000, now) };
  };
  /** Revokes the host's leases, except those of runs its worker says it still holds. */
  const revokeHost = (host: string, reason: string, keep: readonly string[] = []) => {
    for (const entry of slotsOf(host)) {
      if (!entry.lease || keep.includes(entry.lease.experimentId)) continue;
      pendingRevocations.push({ experimentId: entry.lease.experimentId, leaseId: entry.lease.leaseId, reason });
      endLease(entry);
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
  setHandler(leaseHeldQuery, ({ slotId, leaseId }) => {
    const entry = pool.slots.find((e) => e.slot.slotId === slotId);
    return entry?.lease?.leaseId === leaseId && (pool.hosts[entry.slot.host]?.online ?? false);
  });
  /** Applies a (verified) registration: a new incarnation replaces the host's slots and keeps only its live runs' leases. */
  const register = (registration: HostRegistration, identity: string | null) => {
    const known = pool.hosts[registration.host];
    // Leases of runs the worker no longer holds belong to processes that died with its predecessor.
    if (known)
      revokeHost(
        registration.host,
        `worker on ${registration.host} restarted or came back; its runs were lost`,
        registration.liveRuns ?? [],
      );
    const previousSlots = new Map(slotsOf(registration.host).map((e) => [e.slot.slotId, e]));
    pool.slots = pool.slots.filter((entry) => entry.slot.host !== registration.host);
    // A pool started again after it was gone holds the leases its hosts' live runs were trained on.
    const liveLeases = new Map((registration.liveLeases ?? []).map((live) => [live.slotId, live]));
    const rebuilt = (slotId: string) => {
      const live = liveLeases.get(slotId);
      if (!live || pool.slots.some((entry) => entry.lease?.experimentId === live.experimentId)) return null;
      pool.queue = pool.queue.filter((request) => request.experimentId !== live.experimentId);
      return {
        leaseId: live.leaseId,
        experimentId: live.experimentId,
        hostQueue: registration.hostQueue,
        grantedAt: Date.now(),
      };
    };
    for (const slot of registration.slots) {
      const previous = previousSlots.get(slot.slotId);
      const lease =
        previous?.lease && registration.liveRuns?.includes(previous.lease.experimentId)
          ? previous.lease
          : previous?.lease
            ? null
            : rebuilt(slot.slotId);
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
      identity,
      verifiedDigest: registration.authorization?.digest ?? null,
      ...(registration.heartbeatMs !== undefined ? { heartbeatMs: registration.heartbeatMs } : {}),
    };
    delete pool.refusals?.[registration.host];
    touch();
  };
  const refuse = (registration: HostRegistration, reason: string) => {
    pool.refusals = {
      ...pool.refusals,
      [registration.host]: {
        host: registration.host,
        incarnation: registration.incarnation ?? null,
        reason,
        at: Date.now(),
      },
    };
    log.warn('registration refused', { host: registration.host, reason });
  };
  /** Registrations in verification, by host and digest: heartbeats arriving meanwhile wait for the same answer. */
  const verifying = new Set<string>();
  // Workers send their registration as their heartbeat: the same verified incarnation while online is
  // only a heartbeat; anything else (first start, restart, back after being declared offline) is
  // verified (a worker credential, signed over this registration) and registers anew.
  setHandler(registerHostSignal, async (registration) => {
    const known = pool.hosts[registration.host];
    const digest = registration.authorization?.digest ?? null;
    const sameIncarnation =
      known?.online && registration.incarnation !== undefined && known.incarnation === registration.incarnation;
    if (sameIncarnation && digest !== null && known!.verifiedDigest === digest) {
      known!.lastHeartbeat = Date.now();
      return;
    }
    const key = `${registration.host}\0${digest}`;
    if (verifying.has(key)) return;
    verifying.add(key);
    try {
      const { authorization, ...content } = registration;
      const verdict = await authorizer.authorize({
        authorization,
        action: 'register_host',
        target: registration.host,
        content,
        acceptedAt: new Date().toISOString(),
      });
      if ('denied' in verdict) return refuse(registration, verdict.denied);
      const { identity } = verdict;
      // A live host's name belongs to the identity that registered it; a restart under that identity is fine.
      const holder = pool.hosts[registration.host];
      if (holder?.online && holder.identity && holder.identity !== identity.name)
        return refuse(
          registration,
          `${PERMISSION_DENIED}: host name ${registration.host} is held by the live worker identity ${holder.identity}`,
        );
      register(registration, identity.name);
    } finally {
      verifying.delete(key);
    }
  });
  setHandler(hostLostSignal, ({ host, reason }) => {
    if (pool.hosts[host]?.online) takeOffline(host, reason);
  });
  setHandler(deregisterHostSignal, async ({ host, incarnation, authorization }) => {
    const entry = pool.hosts[host];
    if (!entry?.online || entry.incarnation !== incarnation) return;
    const verdict = await authorizer.authorize({
      authorization,
      action: 'register_host',
      target: host,
      content: { host, incarnation },
      acceptedAt: new Date().toISOString(),
      detail: 'deregister',
    });
    // Only the identity that registered the host may take it offline this way.
    if ('denied' in verdict || verdict.identity.name !== pool.hosts[host]?.identity) return;
    if (pool.hosts[host]?.incarnation === incarnation) takeOffline(host, `worker on ${host} shut down`);
  });
  setHandler(requestLeaseSignal, ({ experimentId, requirements, priority, tag, datasets }) => {
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
    touch();
  });
  setHandler(releaseLeaseSignal, ({ experimentId }) => {
    pool.queue = pool.queue.filter((request) => request.experimentId !== experimentId);
    for (const entry of pool.slots) if (entry.lease?.experimentId === experimentId) endLease(entry);
    touch();
  });
  setHandler(drainUpdate, async ({ target, drained, reason, authorization }) => {
    const matching = () => pool.slots.filter((entry) => entry.slot.host === target || entry.slot.slotId === target);
    if (matching().length === 0) throw ApplicationFailure.nonRetryable(`no host or slot named ${target} in the pool`);
    const identity = await requirePermission({
      authorization,
      action: 'drain',
      target,
      content: { target, drained, reason },
      acceptedAt: new Date().toISOString(),
      detail: `${drained ? 'drain' : 'undrain'}: ${reason}`,
    });
    // Read again after the wait: a registration meanwhile may have replaced the host's slot entries.
    const matches = matching();
    const outcome = drainOutcome(target, drained, matches);
    for (const entry of matches) {
      entry.draining = drained;
      entry.drainReason = drained ? `${reason} (by ${identity.name})` : null;
      entry.drainedBy = drained ? 'operator' : null;
    }
    touch();
    return outcome;
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
  setHandler(configurePoolUpdate, async ({ heartbeatLimitMs, policy, authorization }) => {
    if (heartbeatLimitMs !== undefined && !(heartbeatLimitMs >= 1000))
      throw ApplicationFailure.nonRetryable('heartbeatLimitMs must be at least 1000');
    await requirePermission({
      authorization,
      action: 'configure_pool',
      target: 'pool',
      content: { heartbeatLimitMs, policy },
      acceptedAt: new Date().toISOString(),
    });
    if (heartbeatLimitMs !== undefined) pool.heartbeatLimitMs = heartbeatLimitMs;
    if (policy) pool.policy = { ...pool.policy, ...policy };
    touch();
    return { heartbeatLimitMs: pool.heartbeatLimitMs, policy: pool.policy };
  });

  const isOnline = (entry: SlotEntry) => pool.hosts[entry.slot.host]?.online ?? false;
  /** How long this host may stay silent: never less than two of its own heartbeat periods. */
  const limitOf = (host: HostEntry) => silenceLimitMs(pool.heartbeatLimitMs, host.heartbeatMs);
  const nextExpiryMs = () => {
    const online = Object.values(pool.hosts).filter((host) => host.online);
    if (online.length === 0) return undefined;
    const earliest = Math.min(...online.map((host) => host.lastHeartbeat + limitOf(host)));
    return Math.max(1000, earliest - Date.now() + 100);
  };

  /** Grant signals on their way (a failed one frees its slot and wakes the loop). */
  const inFlight = new Set<Promise<void>>();
  let lastWake = Date.now();
  let lastHolderCheck = Date.now();
  let checkingHolders = false;
  const leased = () => pool.slots.filter((entry) => entry.lease !== null);
  /**
   * Frees the leases of holders that ended without releasing them (terminated from outside
   * expctl, timed out): checked in the background, so placement never waits on it.
   */
  const checkHolders = () => {
    checkingHolders = true;
    lastHolderCheck = Date.now();
    const held = leased().map((entry) => ({
      experimentId: entry.lease!.experimentId,
      leaseId: entry.lease!.leaseId,
      slotId: entry.slot.slotId,
    }));
    const checking = holders
      .closedLeaseHolders(held)
      .then((closed) => {
        for (const holder of closed) {
          const entry = pool.slots.find((e) => e.lease?.leaseId === holder.leaseId);
          if (!entry) continue;
          log.warn('lease freed: its holder ended without releasing it', { reason: holder.reason });
          endLease(entry);
          touch();
        }
      })
      .catch(() => undefined) // asked again at the next check
      .finally(() => {
        checkingHolders = false;
      });
    inFlight.add(checking);
    void checking.finally(() => inFlight.delete(checking));
  };
  const nextWakeMs = () => {
    const expiry = nextExpiryMs();
    if (leased().length === 0) return expiry;
    const check = Math.max(100, lastHolderCheck + holderCheckMs(pool.heartbeatLimitMs) - Date.now());
    return expiry === undefined ? check : Math.min(expiry, check);
  };
  for (;;) {
    const timeout = nextWakeMs();
    if (timeout === undefined) await condition(() => dirty);
    else await condition(() => dirty, timeout);
    dirty = false;

    const now = Date.now();
    // While any host is online the loop wakes at least once per heartbeat limit. Waking much later
    // means the server (or this workflow) was unavailable, not the hosts: their heartbeats could not
    // arrive. Give every online host a full limit to report again instead of declaring it lost.
    const longestLimit = Math.max(
      pool.heartbeatLimitMs,
      ...Object.values(pool.hosts)
        .filter((host) => host.online)
        .map(limitOf),
    );
    if (now - lastWake > longestLimit + 5_000) {
      for (const host of Object.values(pool.hosts))
        if (host.online) host.lastHeartbeat = Math.max(host.lastHeartbeat, now);
      log.warn('pool was unavailable; host heartbeats get a fresh limit', { stalledMs: now - lastWake });
    }
    lastWake = now;
    for (const host of Object.values(pool.hosts)) {
      if (host.online && now - host.lastHeartbeat > limitOf(host)) {
        const last = new Date(host.lastHeartbeat).toISOString();
        takeOffline(
          host.host,
          `no heartbeat from ${host.host} for ${Math.round((now - host.lastHeartbeat) / 1000)}s (last at ${last}); the worker is lost`,
        );
        log.warn('host went offline', { host: host.host });
      }
    }
    if (!checkingHolders && leased().length > 0 && now - lastHolderCheck >= holderCheckMs(pool.heartbeatLimitMs))
      checkHolders();
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
    // Fair share between tags (fair-share.ts) orders the queue.
    const loads = poolLoads(pool, now);
    // Leases are taken synchronously; the winners are told concurrently, one round trip for all.
    const grants = assignSlots(views, pool.queue, pool.policy, now, loads).map((grant) => {
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
    const told = grants.map(async ({ grant, entry, lease }) => {
      try {
        await getExternalWorkflowHandle(grant.experimentId).signal(leaseGrantedSignal, {
          ...lease,
          slot: entry.slot,
          // Bounded: a grant's size (and this history's growth) does not grow with the fleet.
          placement: boundPlacementRecord(grant.record),
        });
      } catch {
        // The experiment ended while waiting: the slot goes back.
        if (entry.lease?.leaseId === lease.leaseId) entry.lease = null; // never ran: no GPU time
        dirty = true;
      }
    });
    // Requests that arrive while the grants travel are placed at once, not after the grants land.
    for (const telling of told) {
      inFlight.add(telling);
      void telling.finally(() => inFlight.delete(telling));
    }

    const info = workflowInfo();
    if (
      info.continueAsNewSuggested ||
      info.historyLength > HISTORY_EVENTS_LIMIT ||
      info.historySize > HISTORY_BYTES_LIMIT
    ) {
      await Promise.all(inFlight);
      await condition(allHandlersFinished);
      if (pool.usage) pool.usage = pruneUsage(pool.usage, Date.now());
      await continueAsNew<typeof poolWorkflow>(pool);
    }
  }
}
