import { describe, expect, it } from 'vitest';
import { linedUpEndsBy, lineUpGrants, mayLineUp, soonestFreed } from '../../src/domain/line-up.js';
import { DEFAULT_PLACEMENT_POLICY, type LeaseRequest } from '../../src/domain/placement.js';
import { gpuSlot } from '../helpers/slots.js';

const NOW = 1_000_000;

function request(experimentId: string, gpus = 1, extra: Partial<LeaseRequest> = {}): LeaseRequest {
  return {
    experimentId,
    requirements: { acceleratorClass: 'h100', gpuMemoryMb: 0, runtimeTags: [], ...(gpus > 1 ? { gpus } : {}) },
    priority: 0,
    enqueuedAt: NOW - 1000,
    holdSeconds: 60,
    ...extra,
  };
}

const leased = (index: number) => gpuSlot('node', index, { state: 'leased', leaseEndsBy: NOW + 30_000 });

describe('the line-up pass', () => {
  it('lines the queue up behind running 1-GPU leases, first come first, one run per slot', () => {
    const slots = [leased(0), leased(1)];
    const grants = lineUpGrants(
      slots,
      new Set(['node/gpu0', 'node/gpu1']),
      [request('a', 1, { enqueuedAt: NOW - 3000 }), request('b'), request('c', 1, { enqueuedAt: NOW - 2000 })],
      DEFAULT_PLACEMENT_POLICY,
      NOW,
    );
    expect(grants.map((g) => g.experimentId).sort()).toEqual(['a', 'c']);
    expect(new Set(grants.map((g) => g.slotId))).toEqual(new Set(['node/gpu0', 'node/gpu1']));
    expect(grants.every((g) => g.slotIds.length === 1)).toBe(true);
  });

  it('lines nobody up behind a slot that is not lineable (a gang, a drain, one already lined up)', () => {
    const grants = lineUpGrants(
      [leased(0), leased(1)],
      new Set(['node/gpu1']),
      [request('a'), request('b')],
      DEFAULT_PLACEMENT_POLICY,
      NOW,
    );
    expect(grants).toEqual([expect.objectContaining({ experimentId: 'a', slotId: 'node/gpu1' })]);
  });

  it('never lines up a gang, and lets no later 1-GPU run overtake the gang the slots are held for', () => {
    const grants = lineUpGrants(
      [leased(0), leased(1)],
      new Set(['node/gpu0', 'node/gpu1']),
      [request('gang', 2, { enqueuedAt: NOW - 5000 }), request('small')],
      DEFAULT_PLACEMENT_POLICY,
      NOW,
    );
    expect(grants).toEqual([]);
  });

  it('leaves a slot idle in the real fleet to the grant pass (only lineable slots are taken)', () => {
    const grants = lineUpGrants(
      [gpuSlot('node', 0), leased(1)],
      new Set(['node/gpu1']),
      [request('a'), request('b')],
      DEFAULT_PLACEMENT_POLICY,
      NOW,
    );
    expect(grants.map((g) => g.slotId)).toEqual(['node/gpu1']);
  });

  it('does nothing without a lineable slot or a queue', () => {
    expect(lineUpGrants([leased(0)], new Set(), [request('a')], DEFAULT_PLACEMENT_POLICY, NOW)).toEqual([]);
    expect(lineUpGrants([leased(0)], new Set(['node/gpu0']), [], DEFAULT_PLACEMENT_POLICY, NOW)).toEqual([]);
  });
});

describe('what may line up and when it ends', () => {
  it('takes only 1-GPU requests', () => {
    expect(mayLineUp(request('a'))).toBe(true);
    expect(mayLineUp(request('b', 2))).toBe(false);
  });

  it('ends a lined-up lease at the latest its hold after the lease before it, and unknown when either is', () => {
    expect(linedUpEndsBy({ endsBy: NOW }, { holdSeconds: 60 })).toBe(NOW + 60_000);
    expect(linedUpEndsBy({}, { holdSeconds: 60 })).toBeUndefined();
    expect(linedUpEndsBy({ endsBy: NOW }, {})).toBeUndefined();
  });

  it('lines up behind the leases that free their slots soonest: known ends first, then the oldest grant', () => {
    const leases = [
      { slotId: 'a', grantedAt: NOW },
      { slotId: 'b', endsBy: NOW + 90_000, grantedAt: NOW },
      { slotId: 'c', endsBy: NOW + 30_000, grantedAt: NOW + 5_000 },
      { slotId: 'd', grantedAt: NOW - 10_000 },
    ];
    expect([...soonestFreed(leases, 2)]).toEqual(['c', 'b']);
    expect([...soonestFreed(leases, 3)]).toEqual(['c', 'b', 'd']);
    expect(soonestFreed(leases, 0).size).toBe(0);
    expect(soonestFreed(leases, 9).size).toBe(4);
  });
});
