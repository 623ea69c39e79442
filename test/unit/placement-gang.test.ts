import { describe, expect, it } from 'vitest';
import { chooseSet, describeSet } from '../../src/domain/gang.js';
import {
  assignSlots,
  DEFAULT_PLACEMENT_POLICY,
  placementCheck,
  planQueue,
  refusalReason,
  replacementCheck,
  type LeaseRequest,
  type SlotView,
} from '../../src/domain/placement.js';
import { A100_40GB, gpuSlot } from '../helpers/slots.js';

/** One A100 of `host`; islands and NUMA nodes as given. */
const gpu = (host: string, index: number, extra: Partial<SlotView> = {}): SlotView =>
  gpuSlot(host, index, { ...A100_40GB, ...extra });

/** An 8-GPU host with two 4-GPU NVLink islands, island i on NUMA node i. */
function twoIslands(host: string, extra: (index: number) => Partial<SlotView> = () => ({})): SlotView[] {
  return Array.from({ length: 8 }, (_, i) =>
    gpu(host, i, { nvlinkIsland: i < 4 ? 0 : 1, numaNode: i < 4 ? 0 : 1, ...extra(i) }),
  );
}

const ask = (experimentId: string, gpus: number | 'all', extra: Partial<LeaseRequest> = {}): LeaseRequest => ({
  experimentId,
  requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [], gpus },
  priority: 0,
  enqueuedAt: 0,
  ...extra,
});
const policy = DEFAULT_PLACEMENT_POLICY;
const granted = (slots: SlotView[], queue: LeaseRequest[], now = 0) =>
  Object.fromEntries(assignSlots(slots, queue, policy, now).map((g) => [g.experimentId, g.slotIds]));

describe('gang leases: K GPUs of one class on one host, all or none', () => {
  it('grants K GPUs together, the lead first, and records the set', () => {
    const [grant] = assignSlots(twoIslands('a'), [ask('g', 4)], policy, 0);
    expect(grant!.slotIds).toEqual(['a/gpu0', 'a/gpu1', 'a/gpu2', 'a/gpu3']);
    expect(grant!.slotId).toBe(grant!.slotIds[0]);
    expect(grant!.record.slotIds).toEqual(grant!.slotIds);
    expect(grant!.record.topology).toBe('island 0 of a (GPUs 0-3), NUMA 0');
  });

  it('grants nothing when fewer than K are free: never part of a gang', () => {
    const slots = twoIslands('a', (i) => (i < 5 ? { state: 'leased' } : {}));
    const plan = planQueue(slots, [ask('g', 4)], policy, 0);
    expect(plan.grants).toEqual([]);
    expect(plan.waiting.map((w) => w.experimentId)).toEqual(['g']);
    expect(plan.waiting[0]!.why).toMatch(/a has 3 of the 4 a100 GPUs needed free/);
  });

  it('never splits a gang over two hosts, nor over two classes of one host', () => {
    const hosts = [
      ...twoIslands('a', (i) => (i < 6 ? { state: 'leased' } : {})),
      ...twoIslands('b', (i) => (i < 6 ? { state: 'leased' } : {})),
    ];
    expect(granted(hosts, [ask('g', 3)])).toEqual({});
    const mixed = [gpu('m', 0), gpu('m', 1, { acceleratorClass: 'l4', memoryMb: 23034 })];
    expect(granted(mixed, [ask('g', 2)])).toEqual({});
    expect(granted(mixed, [ask('one', 1)])).toEqual({ one: ['m/gpu1'] });
  });

  it('gives two concurrent K=4 requests one whole island each on a 2x4 host', () => {
    expect(granted(twoIslands('a'), [ask('x', 4), ask('y', 4, { enqueuedAt: 1 })])).toEqual({
      x: ['a/gpu0', 'a/gpu1', 'a/gpu2', 'a/gpu3'],
      y: ['a/gpu4', 'a/gpu5', 'a/gpu6', 'a/gpu7'],
    });
  });

  it('--gpus all takes every usable GPU of one host, whatever its size', () => {
    const slots = [...twoIslands('big'), gpu('small', 0), gpu('small', 1)];
    const [grant] = assignSlots(slots, [ask('all', 'all')], policy, 0);
    expect(grant!.slotIds).toHaveLength(8);
    expect(grant!.record.why).toMatch(/--gpus all: 8/);
    // A host with one GPU drained (health) gives the rest; one with a GPU leased waits.
    const drained = twoIslands('a', (i) => (i === 7 ? { draining: true } : {}));
    expect(assignSlots(drained, [ask('all', 'all')], policy, 0)[0]!.slotIds).toHaveLength(7);
    const busy = twoIslands('a', (i) => (i === 7 ? { state: 'leased' } : {}));
    expect(assignSlots(busy, [ask('all', 'all')], policy, 0)).toEqual([]);
  });

  it('a 1-GPU grant keeps its record shape: no slotIds or topology', () => {
    const [grant] = assignSlots(twoIslands('a'), [ask('one', 1)], policy, 0);
    expect(grant!.slotIds).toEqual([grant!.slotId]);
    expect(grant!.record).not.toHaveProperty('slotIds');
    expect(grant!.record).not.toHaveProperty('topology');
  });
});

describe('set choice by topology', () => {
  it('best fit for K=1: a partly used island before a whole one', () => {
    const slots = twoIslands('a', (i) => (i >= 4 && i < 7 ? { state: 'leased' } : {}));
    expect(granted(slots, [ask('one', 1)])).toEqual({ one: ['a/gpu7'] });
    const [grant] = assignSlots(slots, [ask('one', 1)], policy, 0);
    expect(grant!.record.why).toMatch(/packed onto island 1 of a \(1 free in the island, 5 on the host\)/);
  });

  it('best fit for K=1 across hosts: a partly used host before an empty one', () => {
    const slots = [...twoIslands('a'), ...twoIslands('b', (i) => (i === 0 ? { state: 'leased' } : {}))];
    expect(granted(slots, [ask('one', 1)])).toEqual({ one: ['b/gpu1'] });
    const plain = [gpu('p', 0), gpu('q', 0), gpu('q', 1, { state: 'leased' }), gpu('q', 2)];
    const [grant] = assignSlots(plain, [ask('one', 1)], policy, 0);
    expect(grant!.slotId).toBe('p/gpu0');
    expect(grant!.record.why).toBe(
      'least capable of 3 free slots that fit (score 40960); packed onto p (1 free there), keeping emptier islands and hosts free',
    );
  });

  it('best fit for K=2: the island with the fewest free that still holds 2', () => {
    const slots = twoIslands('a', (i) => (i === 0 || i === 1 ? { state: 'leased' } : {}));
    expect(granted(slots, [ask('two', 2)])).toEqual({ two: ['a/gpu2', 'a/gpu3'] });
  });

  it('falls back to one NUMA node when no island holds K', () => {
    // Islands of two on a 8-GPU host, NUMA 0 = GPUs 0-3, NUMA 1 = GPUs 4-7.
    const slots = Array.from({ length: 8 }, (_, i) =>
      gpu('n', i, { nvlinkIsland: i >> 1, numaNode: i < 4 ? 0 : 1, state: i === 4 ? 'leased' : 'idle' }),
    );
    const [grant] = assignSlots(slots, [ask('three', 3)], policy, 0);
    // NUMA 1 has 3 free (5, 6, 7): the tighter node; NUMA 0 has 4.
    expect(grant!.slotIds).toEqual(['n/gpu5', 'n/gpu6', 'n/gpu7']);
    expect(grant!.record.why).toMatch(/one NUMA node: node 1 has 3 free/);
    expect(grant!.record.topology).toBe('islands 2 (GPUs 5) and 3 (GPUs 6-7) of n, NUMA 1');
  });

  it('else takes the fewest islands', () => {
    // Islands {0,1,2}, {3,4}, {5}, {6}, {7}: no NUMA known. K=5 takes {0,1,2} and {3,4}; K=4 takes
    // {0,1,2} and the rest from the smallest island that holds it, keeping {3,4} whole.
    const island = [0, 0, 0, 1, 1, 2, 3, 4];
    const slots = island.map((nvlinkIsland, i) => gpu('f', i, { nvlinkIsland }));
    const [grant] = assignSlots(slots, [ask('five', 5)], policy, 0);
    expect(grant!.slotIds).toEqual(['f/gpu0', 'f/gpu1', 'f/gpu2', 'f/gpu3', 'f/gpu4']);
    expect(grant!.record.why).toMatch(/the fewest islands that hold 5 \(2\)/);
    const set = chooseSet(slots, 4)!;
    expect(set.islands).toBe(2);
    expect(set.slots.map((s) => s.index)).toEqual([0, 1, 2, 5]);
  });

  it('data already on a host comes before packing', () => {
    const slots = [
      ...twoIslands('empty', () => ({ localDatasets: ['fineweb@v3'] })),
      ...twoIslands('busy', (i) => (i < 7 ? { state: 'leased' } : {})),
    ];
    expect(granted(slots, [ask('data', 1, { datasets: ['fineweb@v3'] })])).toEqual({ data: ['empty/gpu0'] });
    expect(granted(slots, [ask('plain', 1)])).toEqual({ plain: ['busy/gpu7'] });
  });

  it('prefers a host whose island holds K over a tighter host that would split it', () => {
    const split = twoIslands('a', (i) => (i === 0 || i === 4 || i === 5 ? { state: 'leased' } : {}));
    const whole = twoIslands('b');
    const [grant] = assignSlots([...split, ...whole], [ask('g', 4)], policy, 0);
    expect(grant!.record.host).toBe('b');
  });

  it('describes sets without topology plainly', () => {
    expect(describeSet([gpu('p', 0), gpu('p', 1)])).toBe('GPUs 0-1 (no NVLink topology reported) of p, NUMA unknown');
  });
});

describe('validation and re-placement with K GPUs', () => {
  const fleet = [
    ...twoIslands('big')
      .slice(0, 4)
      .map((slot) => ({ ...slot, acceleratorClass: 'h100', memoryMb: 81559 })),
    gpu('small', 0),
    gpu('small', 1),
  ];
  const wants = (gpus: number | 'all', acceleratorClass = 'any') => ({
    acceleratorClass,
    gpuMemoryMb: 0,
    runtimeTags: [],
    gpus,
  });

  it('refuses a request larger than any host, naming the largest K, its host and the flag', () => {
    expect(refusalReason(fleet, wants(8, 'h100'), policy)).toBe(
      "no host in the fleet has 8 GPUs of one class that satisfy accelerator=h100, memory=0 MB, tags=[] (a run's GPUs are all on one host): the largest offers 4 h100 GPUs on one host (big): pass --gpus 4 or less",
    );
    // An `any` request keeps the scarce H100s for those who name them: two a100s is its largest.
    expect(refusalReason(fleet, wants(3), policy)).toMatch(
      /the largest offers 2 a100 GPUs on one host \(small\): pass --gpus 2 or less/,
    );
    expect(refusalReason(fleet, wants(4, 'h100'), policy)).toBeNull();
    expect(refusalReason(fleet, wants('all'), policy)).toBeNull();
    // A class the fleet lacks is still refused for its class, not its count.
    expect(refusalReason(fleet, wants(2, 'b200'), policy)).toMatch(/the fleet has a100, h100: pass --gpu-class/);
  });

  it('validates on a host that holds K, online first', () => {
    const hosts = {
      big: { online: true, hostQueue: 'host-big' },
      small: { online: true, hostQueue: 'host-small' },
    };
    expect(placementCheck(fleet, hosts, wants(2), policy)).toEqual({
      refusal: null,
      hostQueue: 'host-small',
      widestClass: 'a100',
    });
    expect(placementCheck(fleet, hosts, wants(3, 'h100'), policy)).toMatchObject({
      hostQueue: 'host-big',
      widestClass: 'h100',
    });
    expect(placementCheck(fleet, hosts, wants(5, 'h100'), policy).refusal).toMatch(/pass --gpus 4 or less/);
  });

  it('a re-placed K-GPU run counts only live hosts that could hold K', () => {
    const hosts = { big: { online: false }, small: { online: true } };
    expect(replacementCheck(fleet, hosts, wants(4, 'h100'), policy)).toEqual({ refusal: null, liveCapable: 0 });
    expect(replacementCheck(fleet, hosts, wants(2), policy)).toEqual({ refusal: null, liveCapable: 2 });
    expect(
      replacementCheck(fleet, { big: { online: true }, small: { online: true } }, wants(4, 'h100'), policy),
    ).toEqual({
      refusal: null,
      liveCapable: 4,
    });
    expect(replacementCheck(fleet, hosts, wants(8, 'h100'), policy).refusal).toMatch(/pass --gpus 4 or less/);
  });
});
