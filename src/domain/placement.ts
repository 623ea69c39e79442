import type { Slot } from './fleet.js';
import type { Requirements } from './request.js';

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
  if (reasons.some((r) => r.why === null)) return null;
  const summary = reasons.map((r) => `${r.slot.slotId}: ${r.why}`).join('; ');
  return `no slot in the fleet can ever satisfy accelerator=${req.acceleratorClass}, memory=${req.gpuMemoryMb} MB, tags=[${req.runtimeTags.join(',')}]; ${refusalHint(slots, req, policy)} (${summary})`;
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
 * The next request to place: the first of the highest priority, or, with `loads` (fair share,
 * fair-share.ts), the first of the highest priority whose tag has the least recent GPU time.
 */
function nextRequest(pending: LeaseRequest[], loads: Map<string, number> | undefined): number {
  if (!loads) return 0;
  let best = 0;
  const top = pending[0]!.priority;
  for (let i = 1; i < pending.length && pending[i]!.priority === top; i++) {
    const load = (request: LeaseRequest) => loads.get(request.tag ?? '') ?? 0;
    if (load(pending[i]!) < load(pending[best]!)) best = i;
  }
  return best;
}

/**
 * The order the pool serves waiting requests in, were a slot free for each (for `show`'s queue
 * position and `pool`'s queue): priority, then (with `loads`) fair share, then first come.
 */
export function servingOrder(queue: LeaseRequest[], loads?: Map<string, number>): LeaseRequest[] {
  const pending = [...queue].sort(queueOrder);
  const shares = loads && new Map(loads);
  const ordered: LeaseRequest[] = [];
  while (pending.length > 0) {
    const [request] = pending.splice(nextRequest(pending, shares), 1) as [LeaseRequest];
    ordered.push(request);
    if (shares) shares.set(request.tag ?? '', (shares.get(request.tag ?? '') ?? 0) + 1);
  }
  return ordered;
}

/**
 * Grants free slots to waiting requests in priority-then-FIFO order, or priority, then fair share,
 * then FIFO when `loads` gives each tag's recent GPU-seconds; each request takes the best-scoring
 * slot that fits. A request that fits nothing free keeps its place in the queue.
 */
export function assignSlots(
  slots: SlotView[],
  queue: LeaseRequest[],
  policy: PlacementPolicy,
  now: number,
  loads?: Map<string, number>,
): Grant[] {
  const taken = new Set<string>();
  const grants: Grant[] = [];
  const pending = [...queue].sort(queueOrder);
  const shares = loads && new Map(loads);
  while (pending.length > 0) {
    const [request] = pending.splice(nextRequest(pending, shares), 1) as [LeaseRequest];
    const view = slots.map((slot) => (taken.has(slot.slotId) ? { ...slot, state: 'leased' as const } : slot));
    const datasets = request.datasets ?? [];
    const candidates = evaluateCandidates(view, request.requirements, policy, datasets);
    const fitting = candidates
      .filter((c) => c.rejected === null)
      .sort((a, b) => a.score! - b.score! || a.slotId.localeCompare(b.slotId));
    const winner = fitting[0];
    if (!winner) continue;
    const slot = slots.find((s) => s.slotId === winner.slotId)!;
    taken.add(slot.slotId);
    // A lease granted now counts one second for its tag (fair-share.ts), so the next free slot
    // goes to another tag that waits with as little recent use.
    if (shares) shares.set(request.tag ?? '', (shares.get(request.tag ?? '') ?? 0) + 1);
    const scarceUsed = policy.scarceClasses.includes(slot.acceleratorClass);
    grants.push({
      experimentId: request.experimentId,
      slotId: slot.slotId,
      slotIds: [slot.slotId],
      record: {
        slotId: slot.slotId,
        host: slot.host,
        acceleratorClass: slot.acceleratorClass,
        why:
          (fitting.length === 1
            ? 'the only free slot that fits'
            : `least capable of ${fitting.length} free slots that fit (score ${winner.score})`) +
          (datasets.length > 0
            ? `; ${localCount(slot, datasets)}/${datasets.length} datasets already on ${slot.host}`
            : ''),
        policy: scarceUsed
          ? request.requirements.acceleratorClass !== 'any'
            ? `scarce class ${slot.acceleratorClass} requested by name`
            : policy.allowScarceForAny
              ? 'scarce class allowed for any (policy allow-scarce)'
              : `scarce class ${slot.acceleratorClass} used for any: no other class in the fleet can serve the request`
          : 'least-capable-fit',
        candidates,
        queuedMs: now - request.enqueuedAt,
      },
    });
  }
  return grants;
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
  const reserve = reservesScarce(slots, req, policy);
  const capable = slots.filter((slot) => capabilityMismatch(slot, req, policy, reserve) === null);
  const online = capable.filter((slot) => hosts[slot.host]?.online);
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
  /** Capable slots on hosts online now. */
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
  const reserve = reservesScarce(slots, req, policy);
  const liveCapable = slots.filter(
    (slot) => hosts[slot.host]?.online && capabilityMismatch(slot, req, policy, reserve) === null,
  ).length;
  return { refusal: null, liveCapable };
}

/** The class most of these slots have (ties: the first by name). */
function widestClass(slots: Slot[]): string {
  const counts = new Map<string, number>();
  for (const slot of slots) counts.set(slot.acceleratorClass, (counts.get(slot.acceleratorClass) ?? 0) + 1);
  return [...counts].sort(([a, x], [b, y]) => y - x || a.localeCompare(b))[0]![0];
}
