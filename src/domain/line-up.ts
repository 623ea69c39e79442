import { gpusOf } from './bounds.js';
import { planQueue, type Grant, type LeaseRequest, type PlacementPolicy, type SlotView } from './placement.js';

/**
 * Lining up: a queued 1-GPU run is placed behind a 1-GPU lease that is running, so that the
 * holder's worker hands it the slot at exit without a message to the pool. Pure.
 */

/** Whether a request may be lined up behind a running lease: one GPU (gangs are always granted whole). */
export function mayLineUp(request: LeaseRequest): boolean {
  return gpusOf(request.requirements) === 1;
}

/**
 * The line-up pass: the queue planned as if every slot in `lineable` (leased by one 1-GPU run,
 * online, not draining, nobody behind it) were idle, every other slot as it is. Only the plan's
 * 1-GPU grants on such slots are taken: a request the plan would hold GPUs for (a gang's
 * reservation) or place elsewhere is not lined up, so lining up never overtakes the queue's order.
 */
export function lineUpGrants(
  slots: SlotView[],
  lineable: ReadonlySet<string>,
  queue: LeaseRequest[],
  policy: PlacementPolicy,
  now: number,
  loads?: Map<string, number>,
): Grant[] {
  if (lineable.size === 0 || queue.length === 0) return [];
  const views = slots.map((slot) =>
    lineable.has(slot.slotId) ? { ...slot, state: 'idle' as const, leaseEndsBy: null } : slot,
  );
  const requests = new Map(queue.map((request) => [request.experimentId, request]));
  return planQueue(views, queue, policy, now, loads).grants.filter((grant) => {
    const request = requests.get(grant.experimentId);
    return request !== undefined && mayLineUp(request) && grant.slotIds.length === 1 && lineable.has(grant.slotId);
  });
}

/**
 * The slots a line-up pass may use: the `count` whose leases free them soonest (by the latest end
 * the lease gives; unknown ends after known ones, then the oldest grant first). A run lined up
 * waits for its own slot even when another frees first: behind the soonest it waits least.
 */
export function soonestFreed(
  leases: { slotId: string; endsBy?: number | undefined; grantedAt: number }[],
  count: number,
): Set<string> {
  const order = (lease: { endsBy?: number | undefined }) => lease.endsBy ?? Infinity;
  return new Set(
    [...leases]
      .sort((a, b) => order(a) - order(b) || a.grantedAt - b.grantedAt)
      .slice(0, count)
      .map((lease) => lease.slotId),
  );
}

/**
 * When a lined-up lease ends at the latest: it starts at the latest when the lease before it ends
 * (unknown: unknown), and holds at most its own hold from then.
 */
export function linedUpEndsBy(
  before: { endsBy?: number | undefined },
  request: Pick<LeaseRequest, 'holdSeconds'>,
): number | undefined {
  if (before.endsBy === undefined || request.holdSeconds === undefined) return undefined;
  return before.endsBy + request.holdSeconds * 1000;
}
