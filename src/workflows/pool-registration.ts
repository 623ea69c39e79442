import { log, setHandler } from '@temporalio/workflow';
import { PERMISSION_DENIED } from '../domain/authorization.js';
import type { HostRegistration } from '../domain/fleet.js';
import { authorizer } from './authorize.js';
import { deregisterHostSignal, hostLostSignal, registerHostSignal, type SlotEntry } from './definitions.js';
import { leasesOfLiveRuns, type PoolState } from './pool-state.js';

/**
 * Registration: workers join, restart, register again (after the pool took them offline, or their
 * GPUs changed), shut down or are reported lost (by an experiment, or by the host's liveness
 * workflow: live hosts send nothing here). A new incarnation replaces the host's slots and keeps
 * only its live runs' leases.
 */
export function installRegistration(state: PoolState): void {
  /** Registrations in verification, by host and digest: the same registration arriving meanwhile waits for the same answer. */
  const verifying = new Set<string>();
  // The same verified incarnation while online changes nothing; anything else (first start, restart,
  // back after being declared offline) is verified (a worker credential, signed over this
  // registration) and registers anew.
  setHandler(registerHostSignal, async (registration) => {
    const known = state.pool.hosts[registration.host];
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
      await verifyAndRegister(state, registration);
    } finally {
      verifying.delete(key);
    }
  });
  setHandler(hostLostSignal, ({ host, reason, incarnation }) => {
    const entry = state.pool.hosts[host];
    // A liveness workflow names its incarnation: news of one the pool no longer has changes nothing.
    if (!entry?.online || (incarnation !== undefined && entry.incarnation !== incarnation)) return;
    state.takeOffline(host, reason);
  });
  setHandler(deregisterHostSignal, async ({ host, incarnation, authorization }) => {
    const entry = state.pool.hosts[host];
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
    if ('denied' in verdict || verdict.identity.name !== state.pool.hosts[host]?.identity) return;
    if (state.pool.hosts[host]?.incarnation === incarnation) state.takeOffline(host, `worker on ${host} shut down`);
  });
}

async function verifyAndRegister(state: PoolState, registration: HostRegistration): Promise<void> {
  const { authorization, ...content } = registration;
  const verdict = await authorizer.authorize({
    authorization,
    action: 'register_host',
    target: registration.host,
    content,
    acceptedAt: new Date().toISOString(),
  });
  if ('denied' in verdict) return refuse(state, registration, verdict.denied);
  const { identity } = verdict;
  // A live host's name belongs to the identity that registered it; a restart under that identity is fine.
  const holder = state.pool.hosts[registration.host];
  if (holder?.online && holder.identity && holder.identity !== identity.name)
    return refuse(
      state,
      registration,
      `${PERMISSION_DENIED}: host name ${registration.host} is held by the live worker identity ${holder.identity}`,
    );
  register(state, registration, identity.name);
}

function refuse(state: PoolState, registration: HostRegistration, reason: string): void {
  state.pool.refusals = {
    ...state.pool.refusals,
    [registration.host]: {
      host: registration.host,
      incarnation: registration.incarnation ?? null,
      reason,
      at: Date.now(),
    },
  };
  log.warn('registration refused', { host: registration.host, reason });
}

/** Applies a (verified) registration: a new incarnation replaces the host's slots and keeps only its live runs' leases. */
function register(state: PoolState, registration: HostRegistration, identity: string | null): void {
  const { pool } = state;
  // Leases of runs the worker no longer holds belong to processes that died with its predecessor.
  if (pool.hosts[registration.host])
    state.revokeHost(
      registration.host,
      `worker on ${registration.host} restarted or came back; its runs were lost`,
      registration.liveRuns ?? [],
    );
  const previousSlots = new Map(state.slotsOf(registration.host).map((e) => [e.slot.slotId, e]));
  pool.slots = pool.slots.filter((entry) => entry.slot.host !== registration.host);
  // A pool started again after it was gone holds the leases its hosts' live runs were trained on.
  const rebuilt = leasesOfLiveRuns(pool, registration, Date.now());
  const held = new Set<string>();
  for (const slot of registration.slots) {
    const previous = previousSlots.get(slot.slotId);
    const lease =
      previous?.lease && registration.liveRuns?.includes(previous.lease.experimentId)
        ? previous.lease
        : previous?.lease
          ? null
          : (rebuilt.get(slot.slotId) ?? null);
    if (lease) held.add(lease.experimentId);
    // A run lined up behind a lease that stands waits on behind it (revokeHost settled the others).
    const next = lease && lease === previous?.lease ? (previous.next ?? null) : null;
    pool.slots.push({ slot, lease, ...(next ? { next } : {}), ...drainOf(state, slot.slotId, previous) });
  }
  pool.queue = pool.queue.filter((request) => !held.has(request.experimentId));
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
    ...(registration.fencing !== undefined ? { fencing: registration.fencing } : {}),
  };
  delete pool.refusals?.[registration.host];
  state.touch();
}

/** A slot keeps its drain across its host's restarts; a slot new to this pool takes the operator's kept drain. */
function drainOf(
  state: PoolState,
  slotId: string,
  previous: SlotEntry | undefined,
): Pick<SlotEntry, 'draining' | 'drainReason' | 'drainedBy'> {
  if (previous)
    return { draining: previous.draining, drainReason: previous.drainReason, drainedBy: previous.drainedBy };
  const kept = state.pool.drains?.[slotId];
  return kept !== undefined
    ? { draining: true, drainReason: kept, drainedBy: 'operator' }
    : { draining: false, drainReason: null, drainedBy: null };
}
