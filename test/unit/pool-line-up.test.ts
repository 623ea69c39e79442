import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { LeaseRequest } from '../../src/domain/placement.js';
import type { LinedUp, SlotEntry, SlotLease } from '../../src/workflows/definitions.js';
import { PoolState } from '../../src/workflows/pool-state.js';

const NOW = 1_000_000;

const lease = (experimentId: string, grantedAt: number): SlotLease => ({
  leaseId: `lease-${experimentId}`,
  experimentId,
  tag: `tag-${experimentId}`,
  hostQueue: 'q',
  grantedAt,
});

const request = (experimentId: string, enqueuedAt: number): LeaseRequest => ({
  experimentId,
  requirements: { acceleratorClass: 'cpu', gpuMemoryMb: 0, runtimeTags: [] },
  priority: 0,
  enqueuedAt,
});

const linedUp = (experimentId: string, grantedAt: number, enqueuedAt: number): LinedUp => ({
  lease: lease(experimentId, grantedAt),
  request: request(experimentId, enqueuedAt),
});

/** One online host `h` with one slot held by `a` (granted 100 s ago) and `b` lined up behind it 40 s ago. */
function poolWithLineUp(): { state: PoolState; entry: SlotEntry } {
  const entry: SlotEntry = {
    slot: {
      slotId: 'h/0',
      host: 'h',
      index: 0,
      uuid: 'u0',
      name: 'cpu',
      acceleratorClass: 'cpu',
      memoryMb: 0,
      taskQueue: 'q0',
      runtimeTags: [],
    },
    lease: lease('a', NOW - 100_000),
    next: linedUp('b', NOW - 40_000, NOW - 90_000),
    draining: false,
    drainReason: null,
    drainedBy: null,
  };
  const state = new PoolState({
    hosts: {
      h: { host: 'h', hostQueue: 'q', datasets: [], software: {}, online: true, lastHeartbeat: 0, registeredAt: 0 },
    },
    slots: [entry],
    queue: [request('c', NOW - 10_000)],
  });
  return { state, entry };
}

const used = (state: PoolState, tag: string) => state.pool.usage?.[tag]?.gpuSeconds ?? 0;

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(NOW);
});
afterEach(() => vi.useRealTimers());

describe('a run lined up behind a lease', () => {
  it('is handed the slot: the lease before it counted until the line-up, its own from then', () => {
    const { state, entry } = poolWithLineUp();
    state.handOver(entry);
    expect(entry.lease?.experimentId).toBe('b');
    expect(entry.next).toBeNull();
    expect(used(state, 'tag-a')).toBeCloseTo(60, 0);
    state.endLease(entry);
    expect(used(state, 'tag-b')).toBeCloseTo(40, 0);
  });

  it('is promoted when the holder releases now: the holder counted until now, the successor from now', () => {
    const { state, entry } = poolWithLineUp();
    expect(state.promoteNext(entry)).toBe('b');
    expect(entry.lease).toMatchObject({ leaseId: 'lease-b', grantedAt: NOW });
    expect(entry.next).toBeNull();
    expect(used(state, 'tag-a')).toBeCloseTo(100, 0);
  });

  it('goes back to the front of the queue with its first enqueue time when its host is lost, and is told', () => {
    const { state, entry } = poolWithLineUp();
    state.takeOffline('h', 'host lost');
    expect(entry.lease).toBeNull();
    expect(entry.next).toBeNull();
    expect(state.pool.queue.map((r) => [r.experimentId, r.enqueuedAt])).toEqual([
      ['b', NOW - 90_000],
      ['c', NOW - 10_000],
    ]);
    expect(state.pendingRevocations.map((r) => r.leaseId).sort()).toEqual(['lease-a', 'lease-b']);
  });

  it("keeps the slot when its host's worker registers again with it live (it was handed the slot)", () => {
    const { state, entry } = poolWithLineUp();
    state.revokeHost('h', 'worker restarted', ['b']);
    expect(entry.lease?.leaseId).toBe('lease-b');
    expect(entry.next).toBeNull();
    expect(state.pendingRevocations).toEqual([]);
    expect(state.pool.queue.map((r) => r.experimentId)).toEqual(['c']);
  });

  it('waits on behind a holder that is still live after a worker restart', () => {
    const { state, entry } = poolWithLineUp();
    state.revokeHost('h', 'worker restarted', ['a']);
    expect(entry.lease?.leaseId).toBe('lease-a');
    expect(entry.next?.lease.leaseId).toBe('lease-b');
    expect(state.pendingRevocations).toEqual([]);
  });

  it('is found by its lease id', () => {
    const { state, entry } = poolWithLineUp();
    expect(state.linedUpOn('lease-b')).toBe(entry);
    expect(state.linedUpOn('lease-a')).toBeUndefined();
  });
});
