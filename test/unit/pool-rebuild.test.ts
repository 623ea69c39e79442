import { describe, expect, it } from 'vitest';
import { emptyPool, rebuiltPool } from '../../src/workflows/pool-state.js';
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
