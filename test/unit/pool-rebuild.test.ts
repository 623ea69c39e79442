import { describe, expect, it } from 'vitest';
import type { HostRegistration } from '../../src/domain/fleet.js';
import { emptyPool, leasesOfLiveRuns, rebuiltPool } from '../../src/workflows/pool-state.js';
import type { PoolSnapshot, SlotEntry } from '../../src/workflows/definitions.js';

const slot = (slotId: string, extra: Partial<SlotEntry> = {}): SlotEntry => ({
  slot: {
    slotId,
    host: 'h',
    index: 0,
    uuid: slotId,
    name: 'cpu',
    acceleratorClass: 'cpu',
    memoryMb: 0,
    taskQueue: 'q',
    runtimeTags: [],
  },
  lease: null,
  draining: false,
  drainReason: null,
  drainedBy: null,
  ...extra,
});

describe('rebuiltPool', () => {
  const last: PoolSnapshot = {
    ...emptyPool(),
    heartbeatLimitMs: 4_000,
    hosts: {
      h: {
        host: 'h',
        hostQueue: 'q',
        datasets: [],
        software: {},
        online: true,
        lastHeartbeat: 1_000,
        registeredAt: 0,
      },
      gone: {
        host: 'gone',
        hostQueue: 'q2',
        datasets: [],
        software: {},
        online: false,
        lastHeartbeat: 500,
        registeredAt: 0,
      },
    },
    slots: [
      slot('h/0', { lease: { leaseId: 'l1', experimentId: 'e1', hostQueue: 'q', grantedAt: 900 } }),
      slot('h/1', { draining: true, drainReason: 'op (by admin)', drainedBy: 'operator' }),
      slot('h/2', { draining: true, drainReason: 'health: hot', drainedBy: 'health' }),
    ],
    refusals: { x: { host: 'x', incarnation: null, reason: 'no', at: 1 } },
    drains: { 'h/1': 'op (by admin)' },
  };
  const rebuilt = rebuiltPool(last, 5_000);

  it('keeps leases and health drains, and gives online hosts a full limit from now', () => {
    expect(rebuilt.slots![0]!.lease).toEqual(last.slots[0]!.lease);
    expect(rebuilt.slots![2]).toMatchObject({ draining: true, drainedBy: 'health' });
    expect(rebuilt.hosts!.h!.lastHeartbeat).toBe(5_000);
    expect(rebuilt.hosts!.gone!.lastHeartbeat).toBe(500);
  });

  it('carries no setting: operator drains, limit and policy come from the catalog at start', () => {
    expect(rebuilt.slots![1]).toMatchObject({ draining: false, drainReason: null, drainedBy: null });
    expect(rebuilt).not.toHaveProperty('drains');
    expect(rebuilt).not.toHaveProperty('heartbeatLimitMs');
    expect(rebuilt).not.toHaveProperty('policy');
    expect(rebuilt).not.toHaveProperty('refusals');
  });
});

describe('leasesOfLiveRuns', () => {
  const registration = (liveLeases: NonNullable<HostRegistration['liveLeases']>) => ({ hostQueue: 'hq', liveLeases });

  it("holds a gang's lease on every slot of its set, the same lease on each", () => {
    const leases = leasesOfLiveRuns(
      { slots: [] },
      registration([{ experimentId: 'g', leaseId: 'L', slotId: 'h/gpu2', slotIds: ['h/gpu2', 'h/gpu3'] }]),
      5,
    );
    expect([...leases.keys()]).toEqual(['h/gpu2', 'h/gpu3']);
    const expected = { leaseId: 'L', experimentId: 'g', hostQueue: 'hq', grantedAt: 5, slotIds: ['h/gpu2', 'h/gpu3'] };
    expect(leases.get('h/gpu2')).toEqual(expected);
    expect(leases.get('h/gpu3')).toEqual(expected);
  });

  it('joins a gang listed once per slot, and keeps a 1-GPU lease as it was (no slotIds)', () => {
    const leases = leasesOfLiveRuns(
      { slots: [] },
      registration([
        { experimentId: 'g', leaseId: 'L', slotId: 'h/gpu0' },
        { experimentId: 'g', leaseId: 'L', slotId: 'h/gpu1' },
        { experimentId: 'one', leaseId: 'M', slotId: 'h/gpu4' },
      ]),
      5,
    );
    expect(leases.get('h/gpu1')?.slotIds).toEqual(['h/gpu0', 'h/gpu1']);
    expect(leases.get('h/gpu4')).toEqual({ leaseId: 'M', experimentId: 'one', hostQueue: 'hq', grantedAt: 5 });
  });

  it('holds nothing for a run another slot of the pool already holds', () => {
    const held = slot('other/gpu0', { lease: { leaseId: 'L', experimentId: 'g', hostQueue: 'q', grantedAt: 1 } });
    const leases = leasesOfLiveRuns(
      { slots: [held] },
      registration([{ experimentId: 'g', leaseId: 'L', slotId: 'h/gpu0', slotIds: ['h/gpu0', 'h/gpu1'] }]),
      5,
    );
    expect(leases.size).toBe(0);
  });
});
