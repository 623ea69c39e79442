import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { discoverSlots, queryTopology } from '../../src/gpu-worker/discover.js';
import { hostRegistration, liveLeasesOf } from '../../src/gpu-worker/pool-membership.js';
import { FIXTURES, useFakeFleet } from '../helpers/stack.js';

// Discovery runs the fake `nvidia-smi` (test/fixtures/bin) as a process, as a worker runs the real one.

let saved: NodeJS.ProcessEnv;
beforeEach(() => {
  saved = { ...process.env };
});
afterEach(() => {
  process.env = saved;
});

describe('a GPU host reads its topology once, at discovery', () => {
  it('two 4-GPU NVLink islands on two NUMA nodes: every slot names its island and node', async () => {
    useFakeFleet('eight-h100-two-islands.csv');
    const discovery = await discoverSlots({ host: 'big' });
    expect(discovery.topology).toEqual({
      source: 'nvidia-smi topo -m',
      islands: [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
      ],
      numaNodes: { 0: 0, 1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 1, 7: 1 },
    });
    expect(discovery.slots.map((slot) => [slot.slotId, slot.nvlinkIsland, slot.numaNode])).toEqual([
      ['big/gpu0', 0, 0],
      ['big/gpu1', 0, 0],
      ['big/gpu2', 0, 0],
      ['big/gpu3', 0, 0],
      ['big/gpu4', 1, 1],
      ['big/gpu5', 1, 1],
      ['big/gpu6', 1, 1],
      ['big/gpu7', 1, 1],
    ]);
  });

  it('a host restricted to some GPUs (--gpus) keeps their islands as the host has them', async () => {
    useFakeFleet('eight-h100-two-islands.csv');
    const discovery = await discoverSlots({ host: 'big', gpus: [3, 4] });
    expect(discovery.slots.map((slot) => [slot.index, slot.nvlinkIsland, slot.numaNode])).toEqual([
      [3, 0, 0],
      [4, 1, 1],
    ]);
  });

  it('a host whose nvidia-smi cannot tell: each GPU its own island, NUMA unknown', async () => {
    useFakeFleet('four-h100.csv');
    const discovery = await discoverSlots({ host: 'vm' });
    expect(discovery.topology?.islands).toEqual([[0], [1], [2], [3]]);
    expect(discovery.slots.map((slot) => [slot.nvlinkIsland, slot.numaNode])).toEqual([
      [0, null],
      [1, null],
      [2, null],
      [3, null],
    ]);
  });

  it('a failing topo -m leaves the topology unavailable with the reason, and the GPUs offered', async () => {
    useFakeFleet('four-h100.csv');
    process.env.FAKE_NVIDIA_SMI_TOPO = path.join(FIXTURES, 'topology', 'no-such-file.txt');
    const discovery = await discoverSlots({ host: 'odd' });
    expect(discovery.slots).toHaveLength(4);
    expect(discovery.topology?.source).toBe('unavailable');
    expect(discovery.topology?.problem).toMatch(/^nvidia-smi topo -m failed: .*no-such-file/);
    expect(discovery.slots.every((slot) => slot.nvlinkIsland === undefined && slot.numaNode === undefined)).toBe(true);
  });

  it('a real matrix with escape codes, through the fake command', async () => {
    useFakeFleet('one-h100.csv');
    process.env.FAKE_NVIDIA_SMI_TOPO = path.join(FIXTURES, 'topology', 'one-h100-ansi.txt');
    expect(await queryTopology()).toEqual({ source: 'nvidia-smi topo -m', islands: [[0]], numaNodes: { 0: 0 } });
  });

  it('CPU slots have no topology, and the registration carries what discovery read', async () => {
    useFakeFleet(undefined);
    const cpu = await discoverSlots({ host: 'laptop', cpuSlots: 2 });
    expect(cpu.topology).toBeUndefined();
    expect(cpu.slots.every((slot) => slot.nvlinkIsland === undefined)).toBe(true);
    useFakeFleet('eight-h100-two-islands.csv');
    const gpu = await discoverSlots({ host: 'big' });
    const registration = await hostRegistration({
      host: 'big',
      hostQueue: 'q',
      slots: gpu.slots,
      datasetsDir: path.join(FIXTURES, 'no-datasets-here'),
      liveRuns: [],
      heartbeatMs: 1000,
      topology: gpu.topology,
    });
    expect(registration.topology?.islands).toHaveLength(2);
    const cpuRegistration = await hostRegistration({
      host: 'laptop',
      hostQueue: 'q',
      slots: cpu.slots,
      datasetsDir: path.join(FIXTURES, 'no-datasets-here'),
      liveRuns: [],
      heartbeatMs: 1000,
    });
    expect('topology' in cpuRegistration).toBe(false);
  });
});

describe('the live leases a worker hands a re-created pool', () => {
  it('name every GPU of a gang lease, and only the slot of a one-GPU lease', () => {
    expect(
      liveLeasesOf([
        ['exp-gang', { leaseId: 'l1', slotId: 'big/gpu4', slotIds: ['big/gpu4', 'big/gpu5', 'big/gpu6', 'big/gpu7'] }],
        ['exp-one', { leaseId: 'l2', slotId: 'big/gpu0', slotIds: ['big/gpu0'] }],
        ['exp-old', { leaseId: undefined, slotId: undefined }],
      ]),
    ).toEqual([
      {
        experimentId: 'exp-gang',
        leaseId: 'l1',
        slotId: 'big/gpu4',
        slotIds: ['big/gpu4', 'big/gpu5', 'big/gpu6', 'big/gpu7'],
      },
      { experimentId: 'exp-one', leaseId: 'l2', slotId: 'big/gpu0' },
    ]);
  });
  it('leave out a run that gave its lease back at its exit, while its record is still written', () => {
    const run = (released: boolean) => ({ leaseId: 'l3', slotId: 'big/gpu1', leaseReleased: () => released });
    expect(liveLeasesOf([['exp-done', run(true)]])).toEqual([]);
    expect(liveLeasesOf([['exp-done', run(false)]])).toEqual([
      { experimentId: 'exp-done', leaseId: 'l3', slotId: 'big/gpu1' },
    ]);
  });
});
