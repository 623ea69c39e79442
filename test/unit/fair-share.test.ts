import { describe, expect, it } from 'vitest';
import {
  addUsage,
  runningLeasesOf,
  decayedSeconds,
  FAIR_SHARE_HALF_LIFE_MS,
  pruneUsage,
  tagLoads,
  tagShares,
} from '../../src/domain/fair-share.js';
import {
  assignSlots,
  DEFAULT_PLACEMENT_POLICY,
  servingOrder,
  type LeaseRequest,
  type SlotView,
} from '../../src/domain/placement.js';

const slots = (count: number): SlotView[] =>
  Array.from({ length: count }, (_, i) => ({
    slotId: `h/${i}`,
    host: 'h',
    index: i,
    uuid: `GPU-${i}`,
    name: 'a100',
    acceleratorClass: 'a100',
    memoryMb: 40960,
    taskQueue: `q-${i}`,
    runtimeTags: [],
    state: 'idle' as const,
    draining: false,
  }));
const request = (experimentId: string, tag: string, enqueuedAt: number, priority = 0): LeaseRequest => ({
  experimentId,
  tag,
  priority,
  enqueuedAt,
  requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] },
});
/** Agent A queued 10 runs first; agent B queued 10 after it. */
const twoCampaigns = [
  ...Array.from({ length: 10 }, (_, i) => request(`a${i}`, 'agent-a', i)),
  ...Array.from({ length: 10 }, (_, i) => request(`b${i}`, 'agent-b', 100 + i)),
];

describe('fair share between tags', () => {
  it('without shares the queue is first come first served: the first agent takes the whole fleet', () => {
    const grants = assignSlots(slots(4), twoCampaigns, DEFAULT_PLACEMENT_POLICY, 1000);
    expect(grants.map((g) => g.experimentId)).toEqual(['a0', 'a1', 'a2', 'a3']);
  });

  it('with equal recent use, free slots alternate between the waiting tags, each in its own order', () => {
    const grants = assignSlots(slots(4), twoCampaigns, DEFAULT_PLACEMENT_POLICY, 1000, new Map());
    expect(grants.map((g) => g.experimentId)).toEqual(['a0', 'b0', 'a1', 'b1']);
  });

  it('a slot that frees up goes to the tag with the least recent GPU time, even if it queued later', () => {
    const now = 10 * 60_000;
    // Agent A holds 3 slots for 5 minutes; agent B has not run at all.
    const running = [0, 1, 2].map(() => ({ tag: 'agent-a', grantedAt: now - 5 * 60_000 }));
    const loads = tagLoads({}, running, now);
    expect(loads.get('agent-a')).toBe(900);
    const grants = assignSlots(slots(1), twoCampaigns, DEFAULT_PLACEMENT_POLICY, now, loads);
    expect(grants.map((g) => g.experimentId)).toEqual(['b0']);
  });

  it('queue positions (show, pool) follow the order the pool serves: a fresh tag first, then alternating', () => {
    const now = 10 * 60_000;
    const entries = [0, 1].map(() => ({ lease: { tag: 'agent-a', grantedAt: now - 60_000 } }));
    const loads = tagLoads({}, runningLeasesOf([...entries, { lease: null }]), now);
    const order = servingOrder(twoCampaigns.slice(8, 12), loads).map((r) => r.experimentId);
    expect(order).toEqual(['b0', 'b1', 'a8', 'a9']);
    expect(servingOrder(twoCampaigns.slice(8, 12)).map((r) => r.experimentId)).toEqual(['a8', 'a9', 'b0', 'b1']);
  });

  it('priority comes before share', () => {
    const loads = new Map([['agent-a', 10_000]]);
    const urgent = request('a-urgent', 'agent-a', 500, 5);
    const grants = assignSlots(slots(1), [...twoCampaigns, urgent], DEFAULT_PLACEMENT_POLICY, 1000, loads);
    expect(grants.map((g) => g.experimentId)).toEqual(['a-urgent']);
  });

  it('counts GPU-seconds: a gang of 4 weighs 4, so the other tag gets 4 single GPUs before the gang tag runs again', () => {
    const gang = { ...request('a-gang', 'agent-a', 0), requirements: { ...twoCampaigns[0]!.requirements, gpus: 4 } };
    const grants = assignSlots(slots(8), [gang, ...twoCampaigns], DEFAULT_PLACEMENT_POLICY, 1000, new Map());
    expect(grants.map((g) => [g.experimentId, g.slotIds.length])).toEqual([
      ['a-gang', 4],
      ['b0', 1],
      ['b1', 1],
      ['b2', 1],
      ['b3', 1],
    ]);
    // The queue's order as `pool` and `show` print it counts the same way.
    expect(
      servingOrder([gang, ...twoCampaigns], new Map())
        .slice(0, 6)
        .map((r) => r.experimentId),
    ).toEqual(['a-gang', 'b0', 'b1', 'b2', 'b3', 'a0']);
  });

  it("a running gang counts K GPU-seconds per second, and one run in the tag's share", () => {
    const now = 100_000;
    const gangLease = { tag: 'agent-a', grantedAt: 0, leaseId: 'L1' };
    const entries = [
      ...[0, 1, 2, 3].map(() => ({ lease: gangLease })),
      { lease: { tag: 'agent-b', grantedAt: 0, leaseId: 'L2' } },
    ];
    const running = runningLeasesOf(entries);
    expect(tagLoads({}, running, now).get('agent-a')).toBe(400);
    expect(tagShares({}, running, now).map((s) => [s.tag, s.gpuSeconds, s.running])).toEqual([
      ['agent-a', 400, 1],
      ['agent-b', 100, 1],
    ]);
  });

  it('forgets past use with a one-hour half-life, and prunes what is forgotten', () => {
    const usage = addUsage(undefined, 3600, 0);
    expect(decayedSeconds(usage, 0)).toBe(3600);
    expect(decayedSeconds(usage, FAIR_SHARE_HALF_LIFE_MS)).toBeCloseTo(1800, 9);
    expect(decayedSeconds(addUsage(usage, 100, FAIR_SHARE_HALF_LIFE_MS), FAIR_SHARE_HALF_LIFE_MS)).toBeCloseTo(1900, 9);
    expect(
      Object.keys(pruneUsage({ old: usage, fresh: addUsage(undefined, 1, 0) }, 40 * FAIR_SHARE_HALF_LIFE_MS)),
    ).toEqual([]);
    expect(Object.keys(pruneUsage({ old: usage }, 2 * FAIR_SHARE_HALF_LIFE_MS))).toEqual(['old']);
  });

  it('reports each tag share of recent GPU time, largest first', () => {
    const shares = tagShares({ 'agent-b': { gpuSeconds: 100, at: 0 } }, [{ tag: 'agent-a', grantedAt: 0 }], 300_000);
    expect(shares.map((s) => s.tag)).toEqual(['agent-a', 'agent-b']);
    expect(shares[0]).toMatchObject({ gpuSeconds: 300, running: 1 });
    expect(shares[0]!.share + shares[1]!.share).toBeCloseTo(1, 9);
    expect(shares[0]!.share).toBeGreaterThan(0.7);
  });
});
