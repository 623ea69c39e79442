import { getExternalWorkflowHandle, log, setHandler, uuid4 } from '@temporalio/workflow';
import { poolLoads } from '../domain/fair-share.js';
import {
  leaseMessagesProblem,
  leaseReleaseProblem,
  leaseRequestProblem,
  type LeaseRequestInput,
} from '../domain/lease-request.js';
import { linedUpEndsBy, lineUpGrants, mayLineUp, soonestFreed } from '../domain/line-up.js';
import { boundPlacementRecord, planQueue, type Grant, type QueuePlan, type SlotView } from '../domain/placement.js';
import {
  leaseGrantedSignal,
  releaseLeaseSignal,
  leaseMessagesUpdate,
  releaseLeaseUpdate,
  requestLeaseSignal,
  requestLeaseUpdate,
  type Lease,
  type LeaseAnswer,
  type LeaseMessages,
  type LeaseRelease,
  type SlotEntry,
} from './definitions.js';
import type { PoolState } from './pool-state.js';

/**
 * Requests and releases: a request joins the queue once; a release frees its lease or its place in
 * the queue. A request asked as an update is answered with its lease when a slot is free for it now.
 */
export function installRequests(state: PoolState): void {
  setHandler(requestLeaseSignal, (request) => askBySignal(state, request));
  setHandler(requestLeaseUpdate, (request) => answerRequest(state, request), {
    validator: (request) => {
      const problem = leaseRequestProblem(request);
      if (problem !== null) throw new Error(problem);
    },
  });
  setHandler(releaseLeaseSignal, (release) => tellPromoted(state, releaseOf(state, release)));
  setHandler(
    releaseLeaseUpdate,
    (release) => {
      const promoted = releaseOf(state, release);
      const now = Date.now();
      const granted = takeGrants(state, now).map((taken) => leaseOf(state, taken));
      lineUp(state, now);
      return { granted: [...heldLeases(state, promoted), ...granted] };
    },
    { validator: (release) => refuse(leaseReleaseProblem(release)) },
  );
  setHandler(leaseMessagesUpdate, (messages) => answerMessages(state, messages), {
    validator: (messages) => refuse(leaseMessagesProblem(messages)),
  });
}

/** A validator's refusal (a refused update writes nothing to the history). */
function refuse(problem: string | null): void {
  if (problem !== null) throw new Error(problem);
}

/**
 * A batch: its releases, its requests queued (a run that holds a lease is given it again), one
 * grant pass. Each request is answered; the pass's other winners go back to the caller to tell.
 */
function answerMessages(
  state: PoolState,
  { releases, requests }: LeaseMessages,
): { answers: LeaseAnswer[]; granted: Lease[] } {
  const promoted = releases.flatMap((release) => releaseOf(state, release));
  const held = new Map(requests.map((request) => [request.experimentId, heldLease(state, request.experimentId)]));
  for (const request of requests) if (!held.get(request.experimentId)) enqueue(state, request);
  const now = Date.now();
  const taken = new Map(takeGrants(state, now).map((grant) => [grant.grant.experimentId, grant]));
  lineUp(state, now);
  const answers = requests.map((request): LeaseAnswer => {
    const lease = held.get(request.experimentId);
    if (lease) return { lease };
    const mine = taken.get(request.experimentId);
    return mine ? { lease: leaseOf(state, mine) } : { queued: true };
  });
  const asked = new Set(requests.map((request) => request.experimentId));
  const granted = [...taken.values()].filter((grant) => !asked.has(grant.grant.experimentId));
  const others = promoted.filter((experimentId) => !asked.has(experimentId));
  return { answers, granted: [...heldLeases(state, others), ...granted.map((grant) => leaseOf(state, grant))] };
}

/**
 * Frees a run's lease (only the one named, with `leaseId`) and, without `leaseId`, its place in the
 * queue or behind a lease (a run that names no lease was never handed one). A lease with a run
 * lined up behind it passes to that run; a lined-up run's own release ends the lease before it
 * too (it was handed the slot). Returns the runs that hold a slot now, for the caller to tell.
 */
function releaseOf(state: PoolState, { experimentId, leaseId }: LeaseRelease): string[] {
  const promoted: string[] = [];
  // A release of one lease leaves the run's later request (a re-placement) in the queue.
  if (leaseId === undefined) {
    state.pool.queue = state.pool.queue.filter((request) => request.experimentId !== experimentId);
    for (const entry of state.pool.slots) if (entry.next?.lease.experimentId === experimentId) entry.next = null;
  }
  for (const entry of state.pool.slots) {
    if (leaseId !== undefined && entry.next?.lease.leaseId === leaseId) {
      state.handOver(entry);
      state.endLease(entry);
    } else if (
      entry.lease?.experimentId === experimentId &&
      (leaseId === undefined || entry.lease.leaseId === leaseId)
    ) {
      if (entry.next) promoted.push(state.promoteNext(entry)!);
      else state.endLease(entry);
    }
  }
  state.touch();
  return promoted;
}

/**
 * A request by signal (the lease cyclers'): queued; or, from a run that holds a lease, answered with
 * that lease again by signal, as the update answers it: the signal of its grant may have been lost.
 */
function askBySignal(state: PoolState, request: LeaseRequestInput): void {
  if (heldLease(state, request.experimentId)) tellPromoted(state, [request.experimentId]);
  else enqueue(state, request);
}

/** Queues a request unless its run holds a lease, is lined up or waits already (a request is asked again now and then). */
function enqueue(state: PoolState, request: LeaseRequestInput): void {
  const { experimentId, requirements, priority, tag, datasets, holdSeconds } = request;
  const { pool } = state;
  const holds = pool.slots.some(
    (entry) => entry.lease?.experimentId === experimentId || entry.next?.lease.experimentId === experimentId,
  );
  if (holds || pool.queue.some((queued) => queued.experimentId === experimentId)) return;
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
}

/**
 * Queues the request and runs a grant pass at once: the lease comes back in the answer when this
 * request got one (the other winners of the pass are told by signal, as always). A run that asks
 * again while it holds a lease (its earlier answer was lost) is given that lease again.
 */
function answerRequest(state: PoolState, request: LeaseRequestInput): LeaseAnswer {
  const held = heldLease(state, request.experimentId);
  if (held) return { lease: held };
  enqueue(state, request);
  const now = Date.now();
  const grants = takeGrants(state, now);
  lineUp(state, now);
  const mine = grants.find((taken) => taken.grant.experimentId === request.experimentId);
  tellWinners(
    state,
    grants.filter((taken) => taken !== mine),
  );
  return mine ? { lease: leaseOf(state, mine) } : { queued: true };
}

/** The leases these runs hold, as their grants said them (a run that holds none is left out). */
function heldLeases(state: PoolState, experimentIds: string[]): Lease[] {
  return experimentIds.flatMap((experimentId) => heldLease(state, experimentId) ?? []);
}

/** The lease a run holds, as its grant said it (the placement record is not kept: it says so). */
function heldLease(state: PoolState, experimentId: string): Lease | undefined {
  const entries = state.pool.slots.filter((entry) => entry.lease?.experimentId === experimentId);
  const lead = entries[0];
  if (!lead?.lease) return undefined;
  const { slotIds } = lead.lease;
  const slots = slotIds
    ? slotIds.flatMap((id) => entries.filter((entry) => entry.slot.slotId === id).map((entry) => entry.slot))
    : [lead.slot];
  return leaseAsTold(state, lead.lease, slots, 'the lease this run already held when it asked again');
}

/**
 * A lease the pool holds, as its run is told it: its host's fencing, its GPUs, the placement record
 * kept from its grant, or one that says why it was not kept.
 */
function leaseAsTold(
  state: PoolState,
  held: NonNullable<SlotEntry['lease']>,
  slots: SlotEntry['slot'][],
  notKeptWhy: string,
): Lease {
  const { slotIds: _slotIds, endsBy: _endsBy, ...lease } = held;
  const lead = slots[0]!;
  const fencing = state.pool.hosts[lead.host]?.fencing;
  return {
    ...lease,
    ...(fencing ? { fencing } : {}),
    slot: lead,
    slots,
    placement: state.recentPlacements.get(lease.experimentId) ?? placementNotKept(lead, notKeptWhy),
  };
}

/** The placement record of a lease whose grant's record is no longer kept (it says why). */
function placementNotKept(slot: SlotEntry['slot'], why: string): Lease['placement'] {
  return {
    slotId: slot.slotId,
    host: slot.host,
    acceleratorClass: slot.acceleratorClass,
    why,
    policy: '',
    candidates: [],
    queuedMs: 0,
  };
}

/**
 * The run lined up behind this lease, as its run is told it when the holder's worker hands the
 * slot on (successorQuery); null when none is, or its host is not online.
 */
export function successorOf(state: PoolState, leaseId: string): Lease | null {
  const entry = state.pool.slots.find((e) => e.lease?.leaseId === leaseId && e.next);
  if (!entry?.next || !state.isOnline(entry)) return null;
  return leaseAsTold(state, entry.next.lease, [entry.slot], 'lined up behind the run before it on this GPU');
}

/**
 * The line-up pass, after a grant pass: queued 1-GPU runs that placement would start on a slot now
 * held by a running 1-GPU lease are lined up behind that lease (domain/line-up.ts), so its worker
 * hands the slot on at the holder's exit without asking the pool. A run lined up is told nothing
 * now: it stays queued until the slot is handed to it (or its grant comes when a release promotes it).
 */
function lineUp(state: PoolState, now: number): void {
  const { pool } = state;
  const lineable = soonestFreed(
    pool.slots
      .filter((e) => e.lease && !e.lease.slotIds && !e.next && !e.draining && state.isOnline(e))
      .map((e) => ({ slotId: e.slot.slotId, endsBy: e.lease!.endsBy, grantedAt: e.lease!.grantedAt })),
    pool.queue.filter(mayLineUp).length,
  );
  const grants = lineUpGrants(slotViews(state), lineable, pool.queue, pool.policy, now, poolLoads(pool, now));
  for (const grant of grants) {
    const entry = pool.slots.find((e) => e.slot.slotId === grant.slotId)!;
    const request = pool.queue.find((r) => r.experimentId === grant.experimentId)!;
    const endsBy = linedUpEndsBy(entry.lease!, request);
    const lease = {
      leaseId: uuid4(),
      experimentId: grant.experimentId,
      hostQueue: pool.hosts[entry.slot.host]!.hostQueue,
      grantedAt: now,
      ...(request.tag !== undefined ? { tag: request.tag } : {}),
      ...(endsBy !== undefined ? { endsBy } : {}),
    };
    entry.next = { lease, request };
    pool.queue = pool.queue.filter((r) => r.experimentId !== grant.experimentId);
    pool.leasesGranted++;
    keepRecentPlacement(state, grant.experimentId, boundPlacementRecord(grant.record));
    log.debug('lease lined up', { experimentId: grant.experimentId, leaseId: lease.leaseId, slot: grant.slotId });
  }
}

/** The pool's slots as placement sees them: state, drain, when each lease ends at the latest, local data. */
export function slotViews(state: PoolState): SlotView[] {
  const { pool } = state;
  return pool.slots.map((entry) => ({
    ...entry.slot,
    state: !state.isOnline(entry) ? 'offline' : entry.lease ? 'leased' : 'idle',
    draining: entry.draining,
    // A lined-up run holds the slot after the lease before it: the slot is free when both have ended.
    leaseEndsBy: (entry.next ? entry.next.lease.endsBy : entry.lease?.endsBy) ?? null,
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

/** A lease taken in a grant pass: the plan's grant, the slots it holds, the lease they hold. */
interface TakenGrant {
  grant: Grant;
  entries: SlotEntry[];
  lease: Omit<Lease, 'slot' | 'slots' | 'placement'>;
}

/**
 * Grants: queued requests are placed on free slots (fair share between tags orders the queue).
 * A gang's leases are taken together, here, in one workflow task: all of its slots or none.
 * Leases are taken synchronously; the winners are told concurrently, one round trip for all, and
 * requests that arrive while the grants travel are placed at once, not after the grants land.
 */
export function grantQueued(state: PoolState, now: number): void {
  tellWinners(state, takeGrants(state, now));
  lineUp(state, now);
}

/** Takes the leases of one grant pass (the slots are held from here on); nobody is told yet. */
function takeGrants(state: PoolState, now: number): TakenGrant[] {
  const { pool } = state;
  return planOf(state, now).grants.flatMap((grant) => {
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
}

/** The lease as its run is told it: its host's fencing, its GPUs, the placement record (bounded). */
function leaseOf(state: PoolState, { grant, entries, lease }: TakenGrant): Lease {
  const fencing = state.pool.hosts[entries[0]!.slot.host]?.fencing;
  // Bounded: a grant's size (and this history's growth) does not grow with the fleet.
  const placement = boundPlacementRecord(grant.record);
  keepRecentPlacement(state, grant.experimentId, placement);
  return {
    ...lease,
    ...(fencing ? { fencing } : {}),
    slot: entries[0]!.slot,
    slots: entries.map((entry) => entry.slot),
    placement,
  };
}

/** How many grants' placement records the pool keeps for runs that ask again. */
const RECENT_PLACEMENTS = 256;

function keepRecentPlacement(state: PoolState, experimentId: string, placement: Lease['placement']): void {
  const recent = state.recentPlacements;
  recent.delete(experimentId);
  recent.set(experimentId, placement);
  if (recent.size > RECENT_PLACEMENTS) recent.delete(recent.keys().next().value!);
}

/**
 * Tells by signal the runs a release passed a slot to (a run handed it already ignores the grant);
 * one that ended meanwhile gives it back.
 */
export function tellPromoted(state: PoolState, experimentIds: string[]): void {
  for (const lease of heldLeases(state, experimentIds))
    state.track(
      getExternalWorkflowHandle(lease.experimentId)
        .signal(leaseGrantedSignal, lease)
        // It ended meanwhile: the slot goes on to the run lined up behind it, if any.
        .catch(() => tellPromoted(state, releaseOf(state, lease))),
    );
}

/** Tells each winner its lease by signal; a run that ended meanwhile gives its slots back. */
function tellWinners(state: PoolState, grants: TakenGrant[]): void {
  for (const taken of grants) {
    state.track(
      (async () => {
        try {
          await getExternalWorkflowHandle(taken.grant.experimentId).signal(leaseGrantedSignal, leaseOf(state, taken));
        } catch {
          // The experiment ended while waiting: the slots go back (never ran: no GPU time), or on to
          // the run lined up behind it meanwhile.
          const promoted: string[] = [];
          for (const entry of state.entriesOf(taken.lease.leaseId)) {
            entry.lease = null;
            if (entry.next) promoted.push(state.promoteNext(entry)!);
          }
          tellPromoted(state, promoted);
          state.touch();
        }
      })(),
    );
  }
}
