import { addUsage } from '../domain/fair-share.js';
import { DEFAULT_PLACEMENT_POLICY } from '../domain/placement.js';
import { DEFAULT_HEARTBEAT_LIMIT_MS } from '../domain/limits.js';
import type { HostRegistration } from '../domain/fleet.js';
import type { Lease, PoolSnapshot, SlotEntry } from './definitions.js';

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

/** A lease revocation decided in a handler, delivered by the main loop (handlers cannot await). */
export interface PendingRevocation {
  experimentId: string;
  leaseId: string;
  reason: string;
}

/**
 * The one state every phase of the pool shares: the snapshot (what continues as new), whether the
 * main loop has work, revocations to deliver, and the background calls still on their way.
 */
export class PoolState {
  readonly pool: PoolSnapshot;
  dirty = true;
  readonly pendingRevocations: PendingRevocation[] = [];
  /** Grant signals and holder checks on their way (each wakes the loop when it lands). */
  readonly inFlight = new Set<Promise<void>>();
  /**
   * The placement records of the latest grants, by experiment: a run that asks again for the lease
   * it holds (its answer was lost to a retry) gets its placement's reasons back. Not carried across
   * continue-as-new: the state stays small, and a run asks again within moments of its grant.
   */
  readonly recentPlacements = new Map<string, Lease['placement']>();

  constructor(carried?: Partial<PoolSnapshot>) {
    this.pool = { ...emptyPool(), ...carried };
  }

  touch(): void {
    this.dirty = true;
  }

  /** Keeps a background call until it lands: the pool continues as new only when none is on its way. */
  track(call: Promise<void>): void {
    this.inFlight.add(call);
    void call.finally(() => this.inFlight.delete(call));
  }

  slotsOf(host: string): SlotEntry[] {
    return this.pool.slots.filter((entry) => entry.slot.host === host);
  }

  leased(): SlotEntry[] {
    return this.pool.slots.filter((entry) => entry.lease !== null);
  }

  isOnline(entry: SlotEntry): boolean {
    return this.pool.hosts[entry.slot.host]?.online ?? false;
  }

  /** Frees the slot; the lease's GPU time goes to its tag's recent use (fair share). */
  endLease(entry: SlotEntry): void {
    const lease = entry.lease;
    entry.lease = null;
    if (lease) this.charge(lease, Date.now());
  }

  /** The lease's GPU time, from its grant to `until`, goes to its tag's recent use (fair share). */
  private charge(lease: NonNullable<SlotEntry['lease']>, until: number): void {
    if (lease.tag === undefined) return;
    const now = Date.now();
    this.pool.usage = {
      ...this.pool.usage,
      [lease.tag]: addUsage(this.pool.usage?.[lease.tag], Math.max(0, until - lease.grantedAt) / 1000, now),
    };
  }

  /** The slot whose lined-up run holds this lease. */
  linedUpOn(leaseId: string): SlotEntry | undefined {
    return this.pool.slots.find((entry) => entry.next?.lease.leaseId === leaseId);
  }

  /**
   * The lined-up run has the slot (its worker handed it on, unseen by the pool): the lease before
   * it is done. When that one ended is unknown, so its GPU time is counted until the successor was
   * lined up and the successor's from then: the slot's time is counted once.
   */
  handOver(entry: SlotEntry): void {
    const next = entry.next;
    if (!next) return;
    if (entry.lease) this.charge(entry.lease, next.lease.grantedAt);
    entry.lease = next.lease;
    entry.next = null;
  }

  /**
   * The holder released its lease now, and nobody handed the slot on: the lined-up run holds it
   * from now (the caller tells it). Returns its experiment.
   */
  promoteNext(entry: SlotEntry): string | undefined {
    const next = entry.next;
    if (!next) return undefined;
    const now = Date.now();
    this.endLease(entry);
    entry.lease = { ...next.lease, grantedAt: now };
    entry.next = null;
    return next.lease.experimentId;
  }

  /**
   * The lined-up run loses its place behind the lease: it goes back to the front of the queue (its
   * first enqueuedAt kept) and is told of the revocation, which it ignores unless it was handed the
   * slot already (then it stops, as any run whose lease is revoked).
   */
  requeueNext(entry: SlotEntry, reason: string): void {
    const next = entry.next;
    if (!next) return;
    entry.next = null;
    this.pendingRevocations.push({ experimentId: next.lease.experimentId, leaseId: next.lease.leaseId, reason });
    this.pool.queue = [next.request, ...this.pool.queue.filter((r) => r.experimentId !== next.request.experimentId)];
    this.touch();
  }

  /** Every slot the lease holds: one for a 1-GPU lease, the whole set for a gang. */
  entriesOf(leaseId: string): SlotEntry[] {
    return this.pool.slots.filter((entry) => entry.lease?.leaseId === leaseId);
  }

  /** Frees every slot of the lease at once: a gang is held and given back together. */
  endLeaseById(leaseId: string): void {
    for (const entry of this.entriesOf(leaseId)) this.endLease(entry);
  }

  /**
   * Revokes the host's leases, except those of runs its worker says it still holds: each lease
   * once (a gang's experiment hears of it once, not once per GPU), every slot of it freed.
   */
  revokeHost(host: string, reason: string, keep: readonly string[] = []): void {
    for (const entry of this.slotsOf(host)) {
      this.settleNext(entry, reason, keep);
      const lease = entry.lease;
      if (!lease || keep.includes(lease.experimentId)) continue;
      this.pendingRevocations.push({ experimentId: lease.experimentId, leaseId: lease.leaseId, reason });
      this.endLeaseById(lease.leaseId);
    }
  }

  /**
   * A lined-up run on a host whose leases are revoked: one its worker still runs was handed the
   * slot (it holds it now); one behind a lease that stays waits on; any other goes back to the queue.
   */
  private settleNext(entry: SlotEntry, reason: string, keep: readonly string[]): void {
    const next = entry.next;
    if (!next) return;
    if (keep.includes(next.lease.experimentId)) this.handOver(entry);
    else if (!entry.lease || !keep.includes(entry.lease.experimentId)) this.requeueNext(entry, reason);
  }

  /** Offline in one step: no lease is granted on the host until its worker registers again. */
  takeOffline(host: string, reason: string): void {
    const entry = this.pool.hosts[host];
    if (entry) {
      entry.online = false;
      entry.offlineReason = reason;
    }
    this.revokeHost(host, reason);
    this.touch();
  }
}

/**
 * The state a pool re-created after it was gone starts from: the last state of the run that was
 * ended, with its hosts given a full heartbeat limit from now (they heartbeat to the new run) and
 * its leases held, so no run is stopped and no slot given away twice. Its settings (heartbeat
 * limit, policy, operator drains) come from the catalog at start; refusals are not carried.
 */
export function rebuiltPool(last: PoolSnapshot, now: number): Partial<PoolSnapshot> {
  const hosts = Object.fromEntries(
    Object.entries(last.hosts).map(([name, host]) => [
      name,
      host.online ? { ...host, lastHeartbeat: Math.max(host.lastHeartbeat, now) } : host,
    ]),
  );
  // Operator drains come from the catalog at start, like every other setting: none is carried.
  const slots = last.slots.map((entry) =>
    entry.drainedBy === 'operator' ? { ...entry, draining: false, drainReason: null, drainedBy: null } : entry,
  );
  return {
    hosts,
    slots,
    queue: last.queue,
    leasesGranted: last.leasesGranted,
    health: last.health,
    ...(last.usage ? { usage: last.usage } : {}),
  };
}

/**
 * The leases a registration's live runs hold, by slot, for a pool started again after it was gone:
 * a gang's lease on every slot of its set (the worker names them, or lists the lease once per
 * slot), none for a run another host's slot already holds. Pure.
 */
export function leasesOfLiveRuns(
  pool: Pick<PoolSnapshot, 'slots'>,
  registration: Pick<HostRegistration, 'liveLeases' | 'hostQueue'>,
  now: number,
): Map<string, NonNullable<SlotEntry['lease']>> {
  const sets = new Map<string, { experimentId: string; slotIds: Set<string> }>();
  for (const live of registration.liveLeases ?? []) {
    const set = sets.get(live.leaseId) ?? { experimentId: live.experimentId, slotIds: new Set<string>() };
    for (const slotId of live.slotIds ?? [live.slotId]) set.slotIds.add(slotId);
    sets.set(live.leaseId, set);
  }
  const bySlot = new Map<string, NonNullable<SlotEntry['lease']>>();
  for (const [leaseId, { experimentId, slotIds }] of sets) {
    if (pool.slots.some((entry) => entry.lease?.experimentId === experimentId)) continue;
    const ids = [...slotIds];
    const lease = {
      leaseId,
      experimentId,
      hostQueue: registration.hostQueue,
      grantedAt: now,
      ...(ids.length > 1 ? { slotIds: ids } : {}),
    };
    for (const slotId of ids) bySlot.set(slotId, lease);
  }
  return bySlot;
}
