import type { Slot } from './fleet.js';
import { chooseSet, describeSet, indexRanges, TIER_RANK, topologyOrder, whySet, type ChosenSet } from './gang.js';
import { GPUS_ALL, gpusOf, type Requirements } from './request.js';

/** Filter-then-score placement (BRIEF §7). Pure: the pool workflow decides with it; tests check it. */

export interface PlacementPolicy {
  /** Classes only given to requests that ask for them by name, unless allowScarceForAny. */
  scarceClasses: string[];
  allowScarceForAny: boolean;
  /** Extra GPU memory a slot must have beyond what the request asks for. */
  memoryMarginMb: number;
}

export const DEFAULT_PLACEMENT_POLICY: PlacementPolicy = {
  scarceClasses: ['h100', 'h200', 'gh200', 'b200'],
  allowScarceForAny: false,
  memoryMarginMb: 512,
};

export type SlotState = 'idle' | 'leased' | 'offline';

export interface SlotView extends Slot {
  state: SlotState;
  draining: boolean;
  /**
   * When the lease that holds this slot ends at the latest (its grant plus the run's kill limit and
   * setup time): reservations and backfill count on it. Absent or null: unknown.
   */
  leaseEndsBy?: number | null;
  /** Datasets already on the slot's host. */
  localDatasets?: string[];
}

export interface LeaseRequest {
  experimentId: string;
  requirements: Requirements;
  priority: number;
  enqueuedAt: number;
  /** The experiment's tag: fair share orders tags by recent GPU time (absent in older histories). */
  tag?: string;
  /** Datasets the run reads: slots whose host already has them are preferred. */
  datasets?: string[];
  /**
   * The longest the run holds its lease once granted (setup limit plus kill limit), in seconds:
   * backfill lets a run use reserved GPUs only if it surely ends before the reservation starts.
   * Absent: unknown, never backfilled onto reserved GPUs.
   */
  holdSeconds?: number;
}

export interface CandidateRecord {
  slotId: string;
  acceleratorClass: string;
  memoryMb: number;
  rejected: string | null;
  score: number | null;
}

export interface PlacementRecord {
  slotId: string;
  host: string;
  acceleratorClass: string;
  why: string;
  policy: string;
  candidates: CandidateRecord[];
  /** A gang's GPUs (K > 1 only), in topology order: the first is slotId. */
  slotIds?: string[];
  /** The NVLink islands and NUMA nodes the set spans, readable (K > 1 only). */
  topology?: string;
  /** Candidates left out of `candidates` on a large fleet, counted by why (see boundPlacementRecord). */
  omitted?: Record<string, number>;
  queuedMs: number;
}

/** The most candidates a placement record lists: its size, and the pool's history, stay the same at any fleet size. */
export const PLACEMENT_CANDIDATES_KEPT = 16;
/** How an omitted candidate that fitted but lost on score is counted. */
export const FITTED_SCORED_LOWER = 'fitted, scored lower';

/**
 * A placement record with at most `limit` candidates: the winner, the best of the others that
 * fitted (half the room), then one example of every other reason a slot was rejected, then the
 * rest in order. What is left out is counted by reason, so the record still says why every slot
 * lost. Records of fleets within the limit are returned as they are. Pure.
 */
export function boundPlacementRecord(record: PlacementRecord, limit = PLACEMENT_CANDIDATES_KEPT): PlacementRecord {
  if (record.candidates.length <= limit) return record;
  const kept = new Set<CandidateRecord>();
  const winner = record.candidates.find((c) => c.slotId === record.slotId);
  if (winner) kept.add(winner);
  const fitting = record.candidates
    .filter((c) => c.rejected === null && c !== winner)
    .sort((a, b) => a.score! - b.score! || a.slotId.localeCompare(b.slotId));
  for (const candidate of fitting.slice(0, Math.floor(limit / 2) - kept.size)) kept.add(candidate);
  const seenReasons = new Set<string>();
  for (const candidate of record.candidates) {
    if (kept.size >= limit) break;
    if (candidate.rejected !== null && !seenReasons.has(candidate.rejected)) {
      seenReasons.add(candidate.rejected);
      kept.add(candidate);
    }
  }
  for (const candidate of record.candidates) {
    if (kept.size >= limit) break;
    kept.add(candidate);
  }
  const omitted: Record<string, number> = {};
  for (const candidate of record.candidates) {
    if (kept.has(candidate)) continue;
    const reason = candidate.rejected ?? FITTED_SCORED_LOWER;
    omitted[reason] = (omitted[reason] ?? 0) + 1;
  }
  return { ...record, candidates: record.candidates.filter((c) => kept.has(c)), omitted };
}

/** Why a slot cannot run this request by its class, memory or runtime tags (scarcity aside). */
function hardMismatch(slot: Slot, req: Requirements, policy: PlacementPolicy): string | null {
  const wanted = req.acceleratorClass;
  if (wanted !== 'any' && slot.acceleratorClass !== wanted)
    return `class ${slot.acceleratorClass}, requested ${wanted}`;
  if (req.gpuMemoryMb > 0 && slot.memoryMb < req.gpuMemoryMb + policy.memoryMarginMb) {
    return `${slot.memoryMb} MB < ${req.gpuMemoryMb} MB requested + ${policy.memoryMarginMb} MB margin`;
  }
  const missing = req.runtimeTags.filter((tag) => !slot.runtimeTags.includes(tag));
  if (missing.length > 0) return `missing runtime tags ${missing.join(', ')}`;
  return null;
}

/**
 * Scarce classes are kept for requests that name them only while a class that is not scarce
 * could serve the request: on a fleet of only H100s, an `any` request runs on an H100.
 * `slots` are the slots that could take work (registered, not offline).
 */
export function reservesScarce(slots: Slot[], req: Requirements, policy: PlacementPolicy): boolean {
  if (req.acceleratorClass !== 'any' || policy.allowScarceForAny) return false;
  return slots.some(
    (slot) => !policy.scarceClasses.includes(slot.acceleratorClass) && hardMismatch(slot, req, policy) === null,
  );
}

/**
 * Why a slot can never run this request, or null when it could (capability only, not
 * availability). `reserveScarce` comes from reservesScarce over the same fleet.
 */
export function capabilityMismatch(
  slot: Slot,
  req: Requirements,
  policy: PlacementPolicy,
  reserveScarce: boolean,
): string | null {
  const hard = hardMismatch(slot, req, policy);
  if (hard) return hard;
  if (reserveScarce && policy.scarceClasses.includes(slot.acceleratorClass)) {
    return `scarce class ${slot.acceleratorClass} is reserved for requests that name it while another class can serve this one (policy scarce-reserved; --gpu-class ${slot.acceleratorClass} asks for it)`;
  }
  return null;
}

function availability(slot: SlotView): string | null {
  if (slot.state === 'offline') return 'offline';
  if (slot.draining) return 'draining';
  if (slot.state === 'leased') return 'leased';
  return null;
}

function localCount(slot: SlotView, datasets: string[]): number {
  return datasets.filter((d) => slot.localDatasets?.includes(d)).length;
}

/**
 * Lower is better: data already on the host first (no copy before training), then the least
 * capable slot that fits, which keeps bigger GPUs free for jobs that need them.
 */
export function slotScore(slot: SlotView, policy: PlacementPolicy, datasets: string[] = []): number {
  return (
    -10_000_000 * localCount(slot, datasets) +
    (policy.scarceClasses.includes(slot.acceleratorClass) ? 1_000_000 : 0) +
    slot.memoryMb
  );
}

/** Every slot's verdict for a request; used for refusals at submit and for placement records. */
export function evaluateCandidates(
  slots: SlotView[],
  req: Requirements,
  policy: PlacementPolicy,
  datasets: string[] = [],
): CandidateRecord[] {
  const reserve = reservesScarce(
    slots.filter((slot) => slot.state !== 'offline'),
    req,
    policy,
  );
  return slots.map((slot) => {
    const rejected = capabilityMismatch(slot, req, policy, reserve) ?? availability(slot);
    return {
      slotId: slot.slotId,
      acceleratorClass: slot.acceleratorClass,
      memoryMb: slot.memoryMb,
      rejected,
      score: rejected ? null : slotScore(slot, policy, datasets),
    };
  });
}

/** The flag that would make a refused request placeable, from what the fleet offers. */
function refusalHint(slots: Slot[], req: Requirements, policy: PlacementPolicy): string {
  const classes = [...new Set(slots.map((slot) => slot.acceleratorClass))].sort();
  const largest = Math.max(...slots.map((slot) => slot.memoryMb));
  if (req.acceleratorClass !== 'any' && !classes.includes(req.acceleratorClass)) {
    return `the fleet has ${classes.join(', ')}: pass --gpu-class with one of them, or --gpu-class any`;
  }
  const sameClass = slots.filter(
    (slot) => req.acceleratorClass === 'any' || slot.acceleratorClass === req.acceleratorClass,
  );
  const biggest = Math.max(...sameClass.map((slot) => slot.memoryMb));
  if (req.gpuMemoryMb > 0 && biggest < req.gpuMemoryMb + policy.memoryMarginMb) {
    return `the largest ${req.acceleratorClass === 'any' ? '' : `${req.acceleratorClass} `}slot has ${biggest} MB (of ${largest} MB in the fleet): pass --gpu-mem ${Math.max(0, biggest - policy.memoryMarginMb)} or less`;
  }
  const offered = new Set(sameClass.flatMap((slot) => slot.runtimeTags));
  const missing = req.runtimeTags.filter((tag) => !offered.has(tag));
  if (missing.length > 0)
    return `no slot offers runtime tag ${missing.join(', ')}: drop --runtime-tag ${missing[0]}, or start a worker with --runtime-tag ${missing[0]}`;
  return 'no single slot meets all requirements together: relax --gpu-class, --gpu-mem or --runtime-tag';
}

/** Null when some registered slot could run the request (now or later); else why none ever can, and what flag fixes it. */
export function refusalReason(slots: Slot[], req: Requirements, policy: PlacementPolicy): string | null {
  if (slots.length === 0)
    return 'no worker has registered any GPU or CPU slot with the pool (start one with `expctl worker`)';
  const reserve = reservesScarce(slots, req, policy);
  const reasons = slots.map((slot) => ({ slot, why: capabilityMismatch(slot, req, policy, reserve) }));
  if (reasons.some((r) => r.why === null)) return gangRefusal(slots, req, policy);
  const summary = reasons.map((r) => `${r.slot.slotId}: ${r.why}`).join('; ');
  return `no slot in the fleet can ever satisfy accelerator=${req.acceleratorClass}, memory=${req.gpuMemoryMb} MB, tags=[${req.runtimeTags.join(',')}]; ${refusalHint(slots, req, policy)} (${summary})`;
}

/** A gang is taken from the capable GPUs of one class on one host: these, by host and class. */
function capableGroups(slots: Slot[], req: Requirements, policy: PlacementPolicy): Slot[][] {
  const reserve = reservesScarce(slots, req, policy);
  const groups = new Map<string, Slot[]>();
  for (const slot of slots) {
    if (capabilityMismatch(slot, req, policy, reserve) !== null) continue;
    const key = `${slot.host}\u0000${slot.acceleratorClass}`;
    const group = groups.get(key);
    if (group) group.push(slot);
    else groups.set(key, [slot]);
  }
  return [...groups.values()];
}

/** Whether a group of this many capable GPUs could ever hold the request's gang (`all`: any). */
function holdsGang(size: number, req: Requirements): boolean {
  const gpus = gpusOf(req);
  return size > 0 && (gpus === GPUS_ALL || size >= gpus);
}

/** The capable groups' slots on hosts online now, of the groups that still hold the gang. */
function liveGangGroups(groups: Slot[][], hosts: Record<string, { online: boolean }>, req: Requirements): Slot[][] {
  return groups
    .map((group) => group.filter((slot) => hosts[slot.host]?.online))
    .filter((group) => holdsGang(group.length, req));
}

/** Null when some host has K capable GPUs of one class; else the largest K the fleet offers, where, and the flag. */
function gangRefusal(slots: Slot[], req: Requirements, policy: PlacementPolicy): string | null {
  const groups = capableGroups(slots, req, policy);
  if (groups.some((group) => holdsGang(group.length, req))) return null;
  const largest = [...groups].sort(
    (a, b) =>
      b.length - a.length ||
      a[0]!.host.localeCompare(b[0]!.host) ||
      a[0]!.acceleratorClass.localeCompare(b[0]!.acceleratorClass),
  )[0]!;
  const { host, acceleratorClass } = largest[0]!;
  return `no host in the fleet has ${gpusOf(req)} GPUs of one class that satisfy accelerator=${req.acceleratorClass}, memory=${req.gpuMemoryMb} MB, tags=[${req.runtimeTags.join(',')}] (a run's GPUs are all on one host): the largest offers ${largest.length} ${acceleratorClass} GPU${largest.length === 1 ? '' : 's'} on one host (${host}): pass --gpus ${largest.length} or less`;
}

export function queueOrder(a: LeaseRequest, b: LeaseRequest): number {
  return b.priority - a.priority || a.enqueuedAt - b.enqueuedAt;
}

export interface Grant {
  experimentId: string;
  /** The lead GPU: slotIds[0]. */
  slotId: string;
  /** Every GPU of the lease (one for a 1-GPU run), in topology order: granted together or not at all. */
  slotIds: string[];
  record: PlacementRecord;
}

/**
 * Waiting requests in the order the pool serves them: the highest priority first; within it, with
 * `loads` (fair share, fair-share.ts), the tag with the least recent GPU time (charge() adds to it
 * as requests are served), then first come. Each step looks at one request per tag, not the queue.
 */
function servingQueue(queue: LeaseRequest[], loads: Map<string, number> | undefined) {
  const sorted = [...queue].sort(queueOrder);
  const shares = loads && new Map(loads);
  let at = 0; // without shares: the sorted queue in order
  // With shares: the current priority's requests, per tag, each tag's first come first.
  let byTag = new Map<string, LeaseRequest[]>();
  const heads = new Map<string, number>();
  const tagOf = (request: LeaseRequest) => request.tag ?? '';
  const nextPriority = () => {
    byTag = new Map();
    heads.clear();
    const top = sorted[at]!.priority;
    for (; at < sorted.length && sorted[at]!.priority === top; at++) {
      const tag = tagOf(sorted[at]!);
      const list = byTag.get(tag);
      if (list) list.push(sorted[at]!);
      else byTag.set(tag, [sorted[at]!]);
      if (!heads.has(tag)) heads.set(tag, 0);
    }
  };
  return {
    next(): LeaseRequest | undefined {
      if (!shares) return sorted[at++];
      if (heads.size === 0) {
        if (at >= sorted.length) return undefined;
        nextPriority();
      }
      let best: { tag: string; request: LeaseRequest } | null = null;
      for (const [tag, head] of heads) {
        const request = byTag.get(tag)![head]!;
        if (
          !best ||
          (shares.get(tag) ?? 0) < (shares.get(best.tag) ?? 0) ||
          ((shares.get(tag) ?? 0) === (shares.get(best.tag) ?? 0) && queueOrder(request, best.request) < 0)
        )
          best = { tag, request };
      }
      const head = heads.get(best!.tag)! + 1;
      if (head >= byTag.get(best!.tag)!.length) heads.delete(best!.tag);
      else heads.set(best!.tag, head);
      return best!.request;
    },
    /** A grant (or, for servingOrder, a turn) of this many GPUs counts that many GPU-seconds for the tag. */
    charge(request: LeaseRequest, gpus: number): void {
      if (shares) shares.set(tagOf(request), (shares.get(tagOf(request)) ?? 0) + gpus);
    },
  };
}

/**
 * The order the pool serves waiting requests in, were a slot free for each (for `show`'s queue
 * position and `pool`'s queue): priority, then (with `loads`) fair share, then first come.
 */
export function servingOrder(queue: LeaseRequest[], loads?: Map<string, number>): LeaseRequest[] {
  const serving = servingQueue(queue, loads);
  const ordered: LeaseRequest[] = [];
  for (let request = serving.next(); request; request = serving.next()) {
    ordered.push(request);
    // As a grant would: K GPU-seconds for a gang (`all`: at least one).
    const gpus = gpusOf(request.requirements);
    serving.charge(request, gpus === GPUS_ALL ? 1 : gpus);
  }
  return ordered;
}

/** A request that could not start now holds the GPUs it will start on soonest (EASY backfill). */
export interface Reservation {
  experimentId: string;
  host: string;
  /** The GPUs held for it: the free ones now and the leased ones that end first. */
  slotIds: string[];
  gpus: number;
  /** When the last of them is free at the latest (the leases' ends); null: some end is unknown. */
  startsBy: number | null;
}

/** A queued request that was not granted this pass, and why, readable. */
export interface WaitingRequest {
  experimentId: string;
  why: string;
}

/** One grant pass over the queue: what starts now, what is held for whom, why the rest waits. */
export interface QueuePlan {
  grants: Grant[];
  reservations: Reservation[];
  waiting: WaitingRequest[];
}

/**
 * The most reservations one pass holds: each later blocked request waits behind them, so a pass
 * does bounded work however long the queue.
 */
export const MAX_RESERVATIONS = 16;

/** The capable GPUs of one class on one host: a gang is taken from one such group. */
interface HostGroup {
  host: string;
  acceleratorClass: string;
  /** Positions in the pass's slot list. */
  members: number[];
  /** Members neither offline nor draining (fixed for the pass). */
  usable: number;
}

/** What a set of requirements can use, worked out once per pass for every request that shares them. */
interface Capability {
  mismatch: (string | null)[];
  groups: HostGroup[];
}

export interface PlanOptions {
  /** At most this many reservations (default MAX_RESERVATIONS); 0 plans without any (the bench's comparison). */
  maxReservations?: number;
}

/** A host group's free GPUs during a pass, and the sets chosen from them so far. */
interface GroupView {
  version: number;
  /** Positions of its free GPUs. */
  free: number[];
  /** Whether any of them is reserved (then what a request may use depends on its hold). */
  reserved: boolean;
  sets: Map<string, ChosenSet<SlotView> | null>;
}

/** A host where the request could start now, and how well it fits. */
interface Option {
  group: HostGroup;
  need: number;
  set: ChosenSet<SlotView>;
  /** Free GPUs of the group this request may use (best fit: fewer is better). */
  hostFree: number;
  /** Lower is better, compared in order. */
  rank: number[];
}

/** Lexicographic comparison of two rank vectors. */
function compareRanks(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/** "4m 10s", "2h 5m", "30s": a rough wait, for people. */
export function roughDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
  return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
}

function when(at: number, now: number): string {
  return `${new Date(at).toISOString()} (in ${roughDuration(at - now)})`;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * Plans one grant pass: walks the queue in serving order (priority, then fair share in
 * GPU-seconds with `loads`, then first come) and gives each request K GPUs of one class on one
 * host, all or none, chosen by topology (gang.ts) on the best-fitting host. The first requests that
 * cannot start reserve the GPUs they will start on soonest; later requests use reserved GPUs only
 * if they surely end before the reservation starts (EASY backfill), so a large request is never
 * overtaken indefinitely by small ones. Every request not granted gets a reason. Pure; the work per
 * pass grows with the slots times the distinct requirements waiting, not with the whole queue.
 */
export function planQueue(
  slots: SlotView[],
  queue: LeaseRequest[],
  policy: PlacementPolicy,
  now: number,
  loads?: Map<string, number>,
  options: PlanOptions = {},
): QueuePlan {
  const maxReservations = options.maxReservations ?? MAX_RESERVATIONS;
  const positions = new Map(slots.map((slot, i) => [slot.slotId, i]));
  const taken = new Map<number, number | null>(); // granted this pass → when it ends at the latest
  const reservedBy = new Map<number, Reservation>();
  const reservations: Reservation[] = [];
  const grants: Grant[] = [];
  const waiting: WaitingRequest[] = [];
  const capabilities = new Map<string, Capability>();
  const cannotStart = new Map<string, string>(); // grant failures only grow within a pass
  const cannotReserve = new Map<string, string>();
  const online = slots.filter((slot) => slot.state !== 'offline');
  let freeCount = slots.filter((slot) => slot.state === 'idle' && !slot.draining).length;

  const usable = (i: number) => slots[i]!.state !== 'offline' && !slots[i]!.draining;
  const freeNow = (i: number) => slots[i]!.state === 'idle' && !slots[i]!.draining && !taken.has(i);
  /** EASY backfill: a run may use GPUs held for another only if it surely ends before that one starts. */
  const mayBackfill = (reservation: Reservation, request: LeaseRequest) =>
    reservation.startsBy !== null &&
    request.holdSeconds !== undefined &&
    now + request.holdSeconds * 1000 <= reservation.startsBy;
  const mayUse = (i: number, request: LeaseRequest) => {
    const reservation = reservedBy.get(i);
    return !reservation || mayBackfill(reservation, request);
  };
  // What a host group has free, worked out once until a grant or reservation changes its host.
  const hostVersion = new Map<string, number>();
  const touch = (host: string) => hostVersion.set(host, (hostVersion.get(host) ?? 0) + 1);
  const groupViews = new Map<HostGroup, GroupView>();
  const groupView = (group: HostGroup): GroupView => {
    const version = hostVersion.get(group.host) ?? 0;
    let view = groupViews.get(group);
    if (!view || view.version !== version) {
      const free = group.members.filter(freeNow);
      view = { version, free, reserved: free.some((i) => reservedBy.has(i)), sets: new Map() };
      groupViews.set(group, view);
    }
    return view;
  };
  const groupKeyOf = (slot: { host: string; acceleratorClass: string }) => `${slot.host}\u0000${slot.acceleratorClass}`;
  // Free GPUs per host and class: a cheap bound that skips hosts too full for a request.
  const hostClassFree = new Map<string, number>();
  for (const slot of slots)
    if (slot.state === 'idle' && !slot.draining)
      hostClassFree.set(groupKeyOf(slot), (hostClassFree.get(groupKeyOf(slot)) ?? 0) + 1);

  const capabilityOf = (req: Requirements): { key: string; capability: Capability } => {
    const key = JSON.stringify([req.acceleratorClass, req.gpuMemoryMb, req.runtimeTags]);
    let capability = capabilities.get(key);
    if (!capability) {
      const reserve = reservesScarce(online, req, policy);
      const mismatch = slots.map((slot) => capabilityMismatch(slot, req, policy, reserve));
      const byGroup = new Map<string, HostGroup>();
      mismatch.forEach((why, i) => {
        if (why !== null) return;
        const slot = slots[i]!;
        const groupKey = groupKeyOf(slot);
        const group = byGroup.get(groupKey);
        if (group) group.members.push(i);
        else
          byGroup.set(groupKey, { host: slot.host, acceleratorClass: slot.acceleratorClass, members: [i], usable: 0 });
      });
      for (const group of byGroup.values()) group.usable = group.members.filter(usable).length;
      capability = { mismatch, groups: [...byGroup.values()] };
      capabilities.set(key, capability);
    }
    return { key, capability };
  };

  const needOf = (request: LeaseRequest, group: HostGroup): number => {
    const gpus = gpusOf(request.requirements);
    return gpus === GPUS_ALL ? group.usable : gpus;
  };

  /** Where the request could start now, best first; or why it cannot. */
  const optionsFor = (request: LeaseRequest, capability: Capability) => {
    const options: Option[] = [];
    const short: HostGroup[] = [];
    let blockedBy: Reservation | null = null;
    let liveEnough = false;
    const datasets = request.datasets ?? [];
    const wantsAll = gpusOf(request.requirements) === GPUS_ALL;
    for (const group of capability.groups) {
      const need = needOf(request, group);
      if (need === 0 || group.usable < need) {
        short.push(group);
        continue;
      }
      liveEnough = true;
      // Cheap first: the host's free GPUs of the class bound the group's.
      if ((hostClassFree.get(groupKeyOf(group)) ?? 0) < need) {
        short.push(group);
        continue;
      }
      const view = groupView(group);
      const freeAll = view.free;
      const usableFree = view.reserved ? freeAll.filter((i) => mayUse(i, request)) : freeAll;
      const setKey = view.reserved ? `${need}:${usableFree.join(',')}` : `${need}`;
      let set = view.sets.get(setKey);
      if (set === undefined) {
        set = chooseSet(
          usableFree.map((i) => slots[i]!),
          need,
        );
        view.sets.set(setKey, set);
      }
      const free = usableFree;
      if (!set) {
        if (freeAll.length >= need && !blockedBy)
          blockedBy = reservedBy.get(freeAll.find((i) => !mayUse(i, request))!)!;
        short.push(group);
        continue;
      }
      const lead = set.slots[0]!;
      options.push({
        group,
        need,
        set,
        hostFree: free.length,
        rank: [
          -localCount(lead, datasets),
          policy.scarceClasses.includes(group.acceleratorClass) ? 1 : 0,
          Math.max(...set.slots.map((slot) => slot.memoryMb)),
          wantsAll ? -need : 0,
          TIER_RANK[set.tier],
          set.islands,
          free.length,
          set.fitFree,
        ],
      });
    }
    options.sort(
      (a, b) =>
        compareRanks(a.rank, b.rank) ||
        a.group.host.localeCompare(b.group.host) ||
        topologyOrder(a.set.slots[0]!, b.set.slots[0]!),
    );
    return { options, short, blockedBy: blockedBy as Reservation | null, liveEnough };
  };

  /** When a GPU is free at the latest, as far as this pass knows: now, a lease's end, or null (unknown). */
  const freeAt = (i: number): number | null => {
    if (taken.has(i)) return taken.get(i)!;
    const slot = slots[i]!;
    if (slot.state === 'idle') return now;
    return slot.leaseEndsBy === undefined || slot.leaseEndsBy === null ? null : Math.max(now, slot.leaseEndsBy);
  };

  /** The GPUs a blocked request will start on soonest, held for it; null when none can be held. */
  const reserveFor = (request: LeaseRequest, capability: Capability): Reservation | null => {
    let best: { reservation: Reservation; usable: number } | null = null;
    for (const group of capability.groups) {
      const need = needOf(request, group);
      const open = group.members.filter((i) => usable(i) && !reservedBy.has(i));
      if (need === 0 || open.length < need) continue;
      const soonest = open
        .map((i) => ({ i, at: freeAt(i) }))
        .sort((a, b) => (a.at ?? Infinity) - (b.at ?? Infinity) || topologyOrder(slots[a.i]!, slots[b.i]!))
        .slice(0, need);
      const startsBy = soonest.some(({ at }) => at === null) ? null : Math.max(...soonest.map(({ at }) => at!));
      const reservation: Reservation = {
        experimentId: request.experimentId,
        host: group.host,
        slotIds: soonest
          .map(({ i }) => slots[i]!)
          .sort(topologyOrder)
          .map((slot) => slot.slotId),
        gpus: need,
        startsBy,
      };
      if (!best || soonerOrTighter({ reservation, usable: group.usable }, best) < 0)
        best = { reservation, usable: group.usable };
    }
    if (!best) return null;
    for (const slotId of best.reservation.slotIds) reservedBy.set(positions.get(slotId)!, best.reservation);
    touch(best.reservation.host);
    return best.reservation;
  };

  const serving = servingQueue(queue, loads);
  for (let request = serving.next(); request; request = serving.next()) {
    if (freeCount === 0 && reservations.length >= maxReservations) {
      // Nothing can start and nothing more is held: a reason without looking at the fleet.
      const held =
        maxReservations > 0
          ? ` and the ${maxReservations} reservations a pass holds are taken by runs ahead of it`
          : '';
      waiting.push({
        experimentId: request.experimentId,
        why: `waits for ${wantedText(request)}: no GPU in the fleet is free${held} (${ordinal(waiting.length + 1)} of the runs waiting)`,
      });
      continue;
    }
    const { key, capability } = capabilityOf(request.requirements);
    const gpus = gpusOf(request.requirements);
    // Whether it may backfill each reservation decides what it can use, not its exact hold.
    const backfills = reservations.map((reservation) => (mayBackfill(reservation, request) ? 1 : 0)).join('');
    const memo = JSON.stringify([key, gpus, backfills, request.holdSeconds === undefined]);
    let blocked =
      freeCount === 0 ? `waits for ${wantedText(request)}: no GPU in the fleet is free` : cannotStart.get(memo);
    if (blocked === undefined) {
      const { options, short, blockedBy, liveEnough } = optionsFor(request, capability);
      const winner = options[0];
      if (winner) {
        const grant = grantRecord(request, winner, options, capability);
        const ends = request.holdSeconds === undefined ? null : now + request.holdSeconds * 1000;
        for (const slot of winner.set.slots) taken.set(positions.get(slot.slotId)!, ends);
        freeCount -= winner.set.slots.length;
        touch(winner.group.host);
        const groupKey = groupKeyOf(winner.group);
        hostClassFree.set(groupKey, hostClassFree.get(groupKey)! - winner.set.slots.length);
        grants.push(grant);
        // A lease granted now counts one second per GPU for its tag (fair-share.ts), so the next
        // free GPUs go to another tag that waits with as little recent use.
        serving.charge(request, winner.set.slots.length);
        continue;
      }
      blocked = blockedReason(request, capability, short, blockedBy, liveEnough);
      cannotStart.set(memo, blocked);
    }
    waiting.push({ experimentId: request.experimentId, why: reserveOrWait(request, key, capability, blocked) });
  }
  return { grants, reservations, waiting };

  function reserveOrWait(request: LeaseRequest, key: string, capability: Capability, blocked: string): string {
    const memo = JSON.stringify([key, gpusOf(request.requirements)]);
    if (maxReservations === 0) return blocked;
    if (reservations.length >= maxReservations)
      return `${blocked}; the ${maxReservations} reservations a pass holds are taken by runs ahead of it`;
    const failed = cannotReserve.get(memo);
    if (failed !== undefined) return `${blocked}; ${failed}`;
    const reservation = reserveFor(request, capability);
    if (!reservation) {
      const why = 'every GPU that could take it is offline, draining or reserved for a run ahead of it';
      cannotReserve.set(memo, why);
      return `${blocked}; ${why}`;
    }
    reservations.push(reservation);
    return `${blocked}; ${reservationText(reservation)}`;
  }

  function reservationText(reservation: Reservation): string {
    const held = reservation.slotIds.map((slotId) => slots[positions.get(slotId)!]!);
    const freeHeld = held.filter((slot) => freeNow(positions.get(slot.slotId)!)).length;
    const busy = held.length - freeHeld;
    const state = `${freeHeld} free now${busy > 0 ? `, ${busy} held by leases` : ''}`;
    const start =
      reservation.startsBy === null
        ? 'estimated start unknown: a lease it waits for has no known end'
        : `estimated start ${when(reservation.startsBy, now)}`;
    return `reserved ${plural(reservation.gpus, 'GPU')} of ${reservation.host} (${indexRanges(held.map((s) => s.index))}: ${state}); ${start}`;
  }

  function blockedReason(
    request: LeaseRequest,
    capability: Capability,
    short: HostGroup[],
    blockedBy: Reservation | null,
    liveEnough: boolean,
  ): string {
    const gpus = gpusOf(request.requirements);
    const wanted = wantedText(request);
    if (capability.groups.length === 0) return `no slot in the fleet can take it now (${wanted})`;
    // Only the first few hosts are spelled out: the reason stays short on a large fleet.
    const hosts = () =>
      short
        .slice(0, 4)
        .map((group) => shortText(request, group))
        .join('; ') + (short.length > 4 ? `; and ${short.length - 4} more hosts` : '');
    if (!liveEnough)
      return `no live host has ${gpus === GPUS_ALL ? 'a usable GPU' : `${gpus} usable capable GPUs of one class`} (offline or draining: ${hosts()})`;
    if (blockedBy) {
      const hold =
        request.holdSeconds === undefined
          ? 'its lease has no known end, so it never backfills'
          : `its lease may last ${roughDuration(request.holdSeconds * 1000)}, past that start`;
      return `waits for ${wanted}: free GPUs of ${blockedBy.host} are reserved for ${blockedBy.experimentId} (${blockedBy.startsBy === null ? 'start unknown' : `starts by ${new Date(blockedBy.startsBy).toISOString()}`}) and ${hold}`;
    }
    return `waits for ${wanted}: ${hosts()}`;
  }

  /** Why one host cannot take the request now: too few usable GPUs, or too few free. */
  function shortText(request: LeaseRequest, group: HostGroup): string {
    const need = needOf(request, group);
    if (need === 0 || group.usable < need) return `${group.host} has ${plural(group.usable, 'usable GPU')}`;
    const free = group.members.filter((i) => freeNow(i) && mayUse(i, request)).length;
    return `${group.host} has ${free} of the ${need} ${group.acceleratorClass} GPUs needed free`;
  }

  function grantRecord(request: LeaseRequest, winner: Option, options: Option[], capability: Capability): Grant {
    const datasets = request.datasets ?? [];
    const lead = winner.set.slots[0]!;
    const gang = winner.set.slots.length > 1 || gpusOf(request.requirements) !== 1;
    const inSet = new Set(winner.set.slots);
    const groupShort = new Map<number, string>();
    if (gang) {
      const placeable = new Set(options.map((option) => option.group));
      for (const group of capability.groups) {
        if (placeable.has(group)) continue;
        const why = `${group.host} cannot hold ${winner.need} ${group.acceleratorClass} GPUs now`;
        for (const i of group.members) groupShort.set(i, why);
      }
    }
    const candidates: CandidateRecord[] = slots.map((slot, i) => {
      const reservation = reservedBy.get(i);
      const rejected =
        capability.mismatch[i] ??
        (taken.has(i) ? 'leased' : availability(slot)) ??
        (reservation && !mayUse(i, request) ? `reserved for ${reservation.experimentId}` : null) ??
        groupShort.get(i) ??
        null;
      return {
        slotId: slot.slotId,
        acceleratorClass: slot.acceleratorClass,
        memoryMb: slot.memoryMb,
        rejected,
        score: rejected === null || inSet.has(slot) ? slotScore(slot, policy, datasets) : null,
      };
    });
    const fitting = candidates.filter((c) => c.rejected === null);
    const localText =
      datasets.length > 0 ? `; ${localCount(lead, datasets)}/${datasets.length} datasets already on ${lead.host}` : '';
    const packed = packingNote(winner, options);
    const why = gang
      ? `${gpusOf(request.requirements) === GPUS_ALL ? `every usable GPU of ${lead.host} (--gpus all: ${winner.need}); ` : ''}${whySet(winner.set, winner.need)}; ${
          options.length === 1
            ? `${lead.host} is the only host with ${winner.need} ${lead.acceleratorClass} GPUs free`
            : `${lead.host} is the best fit of ${plural(options.length, 'host')} that can take it now (${winner.hostFree} free there)`
        }${localText}`
      : (fitting.length === 1
          ? 'the only free slot that fits'
          : `least capable of ${fitting.length} free slots that fit (score ${slotScore(lead, policy, datasets)})`) +
        localText +
        packed;
    return {
      experimentId: request.experimentId,
      slotId: lead.slotId,
      slotIds: winner.set.slots.map((slot) => slot.slotId),
      record: {
        slotId: lead.slotId,
        host: lead.host,
        acceleratorClass: lead.acceleratorClass,
        why,
        policy: policyText(request, lead, policy),
        candidates,
        ...(gang
          ? { slotIds: winner.set.slots.map((slot) => slot.slotId), topology: describeSet(winner.set.slots) }
          : {}),
        queuedMs: now - request.enqueuedAt,
      },
    };
  }
}

/** What a request waits for, readable: "4 GPUs of one class on one host". */
function wantedText(request: LeaseRequest): string {
  const gpus = gpusOf(request.requirements);
  return gpus === GPUS_ALL ? 'every GPU of one host' : gpus === 1 ? '1 GPU' : `${gpus} GPUs of one class on one host`;
}

/** Reservations compared: the one that starts sooner (unknown last), then the smaller host (best fit), then by name. */
function soonerOrTighter(
  a: { reservation: Reservation; usable: number },
  b: { reservation: Reservation; usable: number },
): number {
  return (
    (a.reservation.startsBy ?? Infinity) - (b.reservation.startsBy ?? Infinity) ||
    a.usable - b.usable ||
    a.reservation.host.localeCompare(b.reservation.host)
  );
}

/** "; packed onto ..." when packing (best fit), not capability, chose between equally good GPUs. */
function packingNote(winner: Option, options: Option[]): string {
  const tiedBefore = (option: Option) => compareRanks(option.rank.slice(0, 6), winner.rank.slice(0, 6)) === 0;
  const looser = options.some(
    (option) =>
      option !== winner &&
      tiedBefore(option) &&
      (option.hostFree > winner.hostFree || option.set.fitFree > winner.set.fitFree),
  );
  const slot = winner.set.slots[0]!;
  const tighterIsland = slot.nvlinkIsland !== undefined && winner.set.fitFree < winner.hostFree;
  if (!looser && !tighterIsland) return '';
  const island = slot.nvlinkIsland !== undefined ? `island ${slot.nvlinkIsland} of ` : '';
  return `; packed onto ${island}${slot.host} (${winner.set.fitFree} free there, ${winner.hostFree} on the host), keeping emptier islands and hosts free`;
}

/** Which class rule let this request use this slot's class. */
function policyText(request: LeaseRequest, slot: Slot, policy: PlacementPolicy): string {
  if (!policy.scarceClasses.includes(slot.acceleratorClass)) return 'least-capable-fit';
  if (request.requirements.acceleratorClass !== 'any') return `scarce class ${slot.acceleratorClass} requested by name`;
  if (policy.allowScarceForAny) return 'scarce class allowed for any (policy allow-scarce)';
  return `scarce class ${slot.acceleratorClass} used for any: no other class in the fleet can serve the request`;
}

function ordinal(n: number): string {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : (['th', 'st', 'nd', 'rd'][n % 10] ?? 'th');
  return `${n}${suffix}`;
}

/** The grants of one pass (planQueue without its reservations and reasons). */
export function assignSlots(
  slots: SlotView[],
  queue: LeaseRequest[],
  policy: PlacementPolicy,
  now: number,
  loads?: Map<string, number>,
): Grant[] {
  return planQueue(slots, queue, policy, now, loads).grants;
}
/** What validation needs from the pool: a refusal, or the queue of a capable host to validate on. */
export interface PlacementCheck {
  refusal: string | null;
  hostQueue: string | null;
  /**
   * The accelerator class with the most capable slots on online hosts (all hosts when none is
   * online): where a batch of `any` runs goes, so its runs compare fairly. Absent in older answers.
   */
  widestClass?: string;
}

/**
 * Refuses requests no registered slot can ever run; otherwise picks a capable host, online first.
 * Pure: the pool answers it as a query, so validation never fetches the whole pool state.
 */
export function placementCheck(
  slots: Slot[],
  hosts: Record<string, { online: boolean; hostQueue: string }>,
  req: Requirements,
  policy: PlacementPolicy,
): PlacementCheck {
  const refusal = refusalReason(slots, req, policy);
  if (refusal) return { refusal, hostQueue: null };
  const groups = capableGroups(slots, req, policy);
  const capable = groups.filter((group) => holdsGang(group.length, req)).flat();
  const online = liveGangGroups(groups, hosts, req).flat();
  const chosen = online[0] ?? capable[0]!;
  return {
    refusal: null,
    hostQueue: hosts[chosen.host]!.hostQueue,
    widestClass: widestClass(online.length ? online : capable),
  };
}

/** Whether a run placed again after its worker was lost can still be taken, and how long it may wait. */
export interface ReplacementCheck {
  /** Why no registered slot, online or not, could ever take it (end at once); null otherwise. */
  refusal: string | null;
  /** Capable slots on hosts online now, counting only hosts that hold the run's K GPUs of one class. */
  liveCapable: number;
}

/**
 * A re-placed run's question: its only capable host may be the one that died. Pure, over the
 * pool's view, like placementCheck.
 */
export function replacementCheck(
  slots: Slot[],
  hosts: Record<string, { online: boolean }>,
  req: Requirements,
  policy: PlacementPolicy,
): ReplacementCheck {
  const refusal = refusalReason(slots, req, policy);
  if (refusal) return { refusal, liveCapable: 0 };
  const liveCapable = liveGangGroups(capableGroups(slots, req, policy), hosts, req).flat().length;
  return { refusal: null, liveCapable };
}

/** The class most of these slots have (ties: the first by name). */
function widestClass(slots: Slot[]): string {
  const counts = new Map<string, number>();
  for (const slot of slots) counts.set(slot.acceleratorClass, (counts.get(slot.acceleratorClass) ?? 0) + 1);
  return [...counts].sort(([a, x], [b, y]) => y - x || a.localeCompare(b))[0]![0];
}
