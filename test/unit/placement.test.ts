import fs from 'node:fs/promises';
import { assessHealth } from '../../src/domain/health.js';
import { describe, expect, it } from 'vitest';
import { acceleratorClassFromName, parseGpuQuery } from '../../src/domain/fleet.js';
import {
  assignSlots,
  boundPlacementRecord,
  FITTED_SCORED_LOWER,
  PLACEMENT_CANDIDATES_KEPT,
  DEFAULT_PLACEMENT_POLICY,
  placementCheck,
  refusalReason,
  replacementCheck,
  type LeaseRequest,
  type SlotView,
} from '../../src/domain/placement.js';

function slot(id: string, acceleratorClass: string, memoryMb: number, extra: Partial<SlotView> = {}): SlotView {
  return {
    slotId: id,
    host: id.split('/')[0]!,
    index: 0,
    uuid: id,
    name: acceleratorClass,
    acceleratorClass,
    memoryMb,
    taskQueue: `q-${id}`,
    runtimeTags: [],
    state: 'idle',
    draining: false,
    ...extra,
  };
}
const req = (
  experimentId: string,
  acceleratorClass = 'any',
  gpuMemoryMb = 0,
  priority = 0,
  enqueuedAt = 0,
): LeaseRequest => ({
  experimentId,
  requirements: { acceleratorClass, gpuMemoryMb, runtimeTags: [] },
  priority,
  enqueuedAt,
});
const fleet = [slot('a/0', 'h100', 81559), slot('a/1', 'a100', 40960), slot('b/0', 'l4', 23034)];

describe('placement', () => {
  it('puts work on the least capable slot that fits and keeps scarce classes for those who ask', () => {
    const grants = assignSlots(
      fleet,
      [req('small'), req('big', 'any', 30_000), req('needs-h100', 'h100')],
      DEFAULT_PLACEMENT_POLICY,
      10,
    );
    expect(Object.fromEntries(grants.map((g) => [g.experimentId, g.slotId]))).toEqual({
      small: 'b/0',
      big: 'a/1',
      'needs-h100': 'a/0',
    });
    const h100 = grants.find((g) => g.experimentId === 'needs-h100')!;
    expect(h100.record.policy).toBe('scarce class h100 requested by name');
    const small = grants.find((g) => g.experimentId === 'small')!.record;
    expect(small.candidates.find((c) => c.slotId === 'a/0')?.rejected).toMatch(/scarce class h100 is reserved/);
  });

  it('never gives one slot to two requests and skips leased, draining and offline slots', () => {
    const view = [
      slot('a/0', 'a100', 40960, { state: 'leased' }),
      slot('a/1', 'a100', 40960, { draining: true }),
      slot('a/2', 'a100', 40960, { state: 'offline' }),
      slot('a/3', 'a100', 40960),
    ];
    const grants = assignSlots(view, [req('x'), req('y')], DEFAULT_PLACEMENT_POLICY, 0);
    expect(grants.map((g) => [g.experimentId, g.slotId])).toEqual([['x', 'a/3']]);
  });

  it('serves higher priority first, then FIFO', () => {
    const grants = assignSlots(
      [slot('a/0', 'a100', 40960)],
      [req('early', 'any', 0, 0, 1), req('urgent', 'any', 0, 5, 9), req('late', 'any', 0, 0, 2)],
      DEFAULT_PLACEMENT_POLICY,
      10,
    );
    expect(grants.map((g) => g.experimentId)).toEqual(['urgent']);
  });

  it('refuses what the fleet can never run, with every slot’s reason; accepts what only has to wait', () => {
    expect(
      refusalReason(fleet, { acceleratorClass: 'b200', gpuMemoryMb: 0, runtimeTags: [] }, DEFAULT_PLACEMENT_POLICY),
    ).toMatch(/a\/0: class h100, requested b200; a\/1: class a100/);
    expect(
      refusalReason(
        fleet,
        { acceleratorClass: 'a100', gpuMemoryMb: 40_500, runtimeTags: [] },
        DEFAULT_PLACEMENT_POLICY,
      ),
    ).toMatch(/40960 MB < 40500 MB requested \+ 512 MB margin/);
    expect(
      refusalReason(
        fleet,
        { acceleratorClass: 'a100', gpuMemoryMb: 30_000, runtimeTags: [] },
        DEFAULT_PLACEMENT_POLICY,
      ),
    ).toBeNull();
    expect(
      refusalReason([], { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] }, DEFAULT_PLACEMENT_POLICY),
    ).toMatch(/no worker has registered/);
  });
});

describe('scarce classes on a fleet of one class', () => {
  const allH100 = [
    slot('n/0', 'h100', 81559),
    slot('n/1', 'h100', 81559),
    slot('n/2', 'h100', 81559),
    slot('n/3', 'h100', 81559),
  ];
  it('places a default request on an all-H100 node, and says why it used a scarce class', () => {
    expect(
      refusalReason(allH100, { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] }, DEFAULT_PLACEMENT_POLICY),
    ).toBeNull();
    const grants = assignSlots(allH100, [req('a'), req('b')], DEFAULT_PLACEMENT_POLICY, 0);
    expect(grants.map((g) => g.slotId)).toEqual(['n/0', 'n/1']);
    expect(grants[0]!.record.policy).toBe(
      'scarce class h100 used for any: no other class in the fleet can serve the request',
    );
  });
  it('keeps reserving H100s while an L4 could serve the request, even when the L4 is busy', () => {
    const mixed = [...allH100, slot('m/0', 'l4', 23034, { state: 'leased' })];
    expect(assignSlots(mixed, [req('a')], DEFAULT_PLACEMENT_POLICY, 0)).toEqual([]);
  });
  it('uses the H100s when the only other class cannot serve the request (memory)', () => {
    const mixed = [...allH100, slot('m/0', 'l4', 23034)];
    const [grant] = assignSlots(mixed, [req('big', 'any', 40_000)], DEFAULT_PLACEMENT_POLICY, 0);
    expect(grant?.slotId).toBe('n/0');
  });
  it('names the flag that fixes a refused request', () => {
    expect(
      refusalReason(allH100, { acceleratorClass: 'a100', gpuMemoryMb: 0, runtimeTags: [] }, DEFAULT_PLACEMENT_POLICY),
    ).toMatch(/the fleet has h100: pass --gpu-class/);
    expect(
      refusalReason(
        allH100,
        { acceleratorClass: 'any', gpuMemoryMb: 90_000, runtimeTags: [] },
        DEFAULT_PLACEMENT_POLICY,
      ),
    ).toMatch(/pass --gpu-mem 81047 or less/);
    expect(
      refusalReason(
        allH100,
        { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['fp8'] },
        DEFAULT_PLACEMENT_POLICY,
      ),
    ).toMatch(/drop --runtime-tag fp8/);
  });
});

describe('nvidia-smi parsing', () => {
  it('reads the query format and derives accelerator classes', () => {
    const rows = parseGpuQuery(
      '0, GPU-1, NVIDIA H100 80GB HBM3, 81559, 5, 0, 34, 550.54.15, 0\n1, GPU-2, NVIDIA A100-SXM4-40GB, 40960, 0, [N/A], [N/A], 550.54.15, [N/A]\n',
    );
    expect(rows).toEqual([
      {
        index: 0,
        uuid: 'GPU-1',
        name: 'NVIDIA H100 80GB HBM3',
        memoryTotalMb: 81559,
        memoryUsedMb: 5,
        utilizationPercent: 0,
        temperatureC: 34,
        driverVersion: '550.54.15',
        eccErrors: 0,
      },
      {
        index: 1,
        uuid: 'GPU-2',
        name: 'NVIDIA A100-SXM4-40GB',
        memoryTotalMb: 40960,
        memoryUsedMb: 0,
        utilizationPercent: null,
        temperatureC: null,
        driverVersion: '550.54.15',
        eccErrors: null,
      },
    ]);
    expect(
      [
        'NVIDIA H100 80GB HBM3',
        'NVIDIA H200',
        'NVIDIA A100-SXM4-80GB',
        'NVIDIA L4',
        'NVIDIA L40S',
        'Tesla V100-SXM2-16GB',
        'NVIDIA GeForce RTX 4090',
      ].map(acceleratorClassFromName),
    ).toEqual(['h100', 'h200', 'a100', 'l4', 'l40s', 'v100', 'rtx4090']);
    expect(() => parseGpuQuery('garbage')).toThrow(/has 1 fields, expected 9/);
  });

  it("reads a real H100's answer, idle and under a matmul load, byte for byte as nvidia-smi 580 printed it", async () => {
    const read = async (file: string) =>
      parseGpuQuery(await fs.readFile(new URL(`../fixtures/fleets/${file}`, import.meta.url), 'utf8'))[0]!;
    const idle = await read('one-h100.csv');
    const busy = await read('one-h100-busy.csv');
    expect(idle).toMatchObject({ name: 'NVIDIA H100 80GB HBM3', memoryTotalMb: 81559, driverVersion: '580.159.04' });
    expect(acceleratorClassFromName(idle.name)).toBe('h100');
    expect(busy).toMatchObject({ uuid: idle.uuid, memoryUsedMb: 1395, utilizationPercent: 100, temperatureC: 69 });
    expect([idle.eccErrors, busy.eccErrors]).toEqual([0, 0]);
    // Busy and warm is not a fault: the health check flags neither reading.
    const report = (gpu: typeof busy) => ({
      host: 'h',
      checkedAt: '',
      gpus: [{ ...gpu, slotId: 'h/gpu0' }],
      slotIds: ['h/gpu0'],
      diskFreeMb: null,
      error: null,
    });
    expect([assessHealth(report(idle)), assessHealth(report(busy))]).toEqual([[], []]);
  });

  it("reads a real H200 host's answer, byte for byte as nvidia-smi 580 printed it", async () => {
    const text = await fs.readFile(new URL('../fixtures/fleets/one-h200.csv', import.meta.url), 'utf8');
    const [row] = parseGpuQuery(text);
    expect(row).toMatchObject({ index: 0, name: 'NVIDIA H200', memoryTotalMb: 143771, driverVersion: '580.159.04' });
    expect(row!.uuid).toMatch(/^GPU-[0-9a-f-]{36}$/);
    expect(acceleratorClassFromName(row!.name)).toBe('h200');
  });
});

describe('data locality', () => {
  it('prefers a host that already has the datasets, and says so', () => {
    const slots = [slot('a/0', 'l4', 23034), slot('b/0', 'a100', 40960, { localDatasets: ['fineweb@v3'] })];
    const [grant] = assignSlots(slots, [{ ...req('data'), datasets: ['fineweb@v3'] }], DEFAULT_PLACEMENT_POLICY, 0);
    expect(grant?.slotId).toBe('b/0');
    expect(grant?.record.why).toMatch(/1\/1 datasets already on b/);
    const [plain] = assignSlots(slots, [req('nodata')], DEFAULT_PLACEMENT_POLICY, 0);
    expect(plain?.slotId).toBe('a/0');
  });
});

describe('placementCheck (validation asks the pool this instead of reading its whole state)', () => {
  const hosts = {
    a: { online: false, hostQueue: 'host-a' },
    b: { online: true, hostQueue: 'host-b' },
  };
  const any = { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] };

  it('refuses a request no slot can ever run, naming why', () => {
    const check = placementCheck(fleet, hosts, { ...any, acceleratorClass: 'b200' }, DEFAULT_PLACEMENT_POLICY);
    expect(check.hostQueue).toBeNull();
    expect(check.refusal).toBe(refusalReason(fleet, { ...any, acceleratorClass: 'b200' }, DEFAULT_PLACEMENT_POLICY));
    expect(check.refusal).toContain('b200');
  });

  it('validates on a capable host that is online, else on a capable one that is not', () => {
    // Only host a has an a100: its queue, although a is offline (the run waits for it).
    expect(placementCheck(fleet, hosts, { ...any, acceleratorClass: 'a100' }, DEFAULT_PLACEMENT_POLICY)).toEqual({
      refusal: null,
      hostQueue: 'host-a',
      widestClass: 'a100',
    });
    // Any class: the online host b is chosen over a's earlier slots.
    expect(placementCheck(fleet, hosts, { ...any, gpuMemoryMb: 20000 }, DEFAULT_PLACEMENT_POLICY)).toEqual({
      refusal: null,
      hostQueue: 'host-b',
      widestClass: 'l4',
    });
  });

  it("names the class with the most capable online slots, where a batch of 'any' runs", () => {
    const wide = [...fleet, slot('b/1', 'a100', 40960), slot('b/2', 'a100', 40960), slot('b/3', 'l4', 23034)];
    expect(placementCheck(wide, hosts, any, DEFAULT_PLACEMENT_POLICY).widestClass).toBe('a100');
    const tie = [...fleet, slot('b/1', 'a100', 40960)];
    expect(placementCheck(tie, hosts, any, DEFAULT_PLACEMENT_POLICY).widestClass).toBe('a100');
  });
});

describe('placement records stay bounded on a large fleet', () => {
  const big = Array.from({ length: 64 }, (_, i) =>
    slot(`h${i >> 4}/${i & 15}`, ['h100', 'a100', 'l4', 'a10g'][i % 4]!, [81559, 40960, 23034, 24576][i % 4]!, {
      state: i % 3 === 0 ? 'leased' : 'idle',
    }),
  );

  it('keeps the winner, the best fitting, an example of every reason, and counts the rest by reason', () => {
    const [grant] = assignSlots(big, [req('e1', 'any', 20_000)], DEFAULT_PLACEMENT_POLICY, 0);
    const full = grant!.record;
    expect(full.candidates).toHaveLength(64);
    const bounded = boundPlacementRecord(full);
    expect(bounded.candidates).toHaveLength(PLACEMENT_CANDIDATES_KEPT);
    expect(bounded.candidates.some((c) => c.slotId === full.slotId)).toBe(true);
    // Every reason a slot lost is still in the record, listed or counted, and nothing is lost.
    const reasons = new Set(full.candidates.map((c) => c.rejected ?? FITTED_SCORED_LOWER));
    const shown = new Set([
      ...bounded.candidates.map((c) => c.rejected ?? FITTED_SCORED_LOWER),
      ...Object.keys(bounded.omitted!),
    ]);
    expect(shown).toEqual(reasons);
    const listedRejections = new Set(bounded.candidates.filter((c) => c.rejected).map((c) => c.rejected));
    expect(listedRejections.size).toBe(new Set(full.candidates.filter((c) => c.rejected).map((c) => c.rejected)).size);
    const omittedCount = Object.values(bounded.omitted!).reduce((sum, n) => sum + n, 0);
    expect(omittedCount + bounded.candidates.length).toBe(64);
    // The best of the others that fitted take half the room (the winner is one of that half).
    const best = PLACEMENT_CANDIDATES_KEPT / 2 - 1;
    const fittingScores = full.candidates
      .filter((c) => c.rejected === null && c.slotId !== full.slotId)
      .map((c) => c.score!)
      .sort((a, b) => a - b);
    const keptScores = bounded.candidates
      .filter((c) => c.rejected === null && c.slotId !== full.slotId)
      .map((c) => c.score!)
      .sort((a, b) => a - b);
    expect(keptScores.slice(0, best)).toEqual(fittingScores.slice(0, best));
    expect(JSON.stringify(bounded).length).toBeLessThan(JSON.stringify(full).length / 2);
  });

  it('leaves a record within the limit as it is', () => {
    const [grant] = assignSlots(fleet, [req('e1')], DEFAULT_PLACEMENT_POLICY, 0);
    expect(boundPlacementRecord(grant!.record)).toBe(grant!.record);
  });
});

describe('replacementCheck (a run placed again after its worker was lost)', () => {
  const any = { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] };
  const hosts = { a: { online: false }, b: { online: true } };

  it('counts the capable slots on live hosts only', () => {
    // Only the dead host a has an a100: nothing live can take the run, yet a may come back.
    expect(replacementCheck(fleet, hosts, { ...any, acceleratorClass: 'a100' }, DEFAULT_PLACEMENT_POLICY)).toEqual({
      refusal: null,
      liveCapable: 0,
    });
    expect(replacementCheck(fleet, hosts, any, DEFAULT_PLACEMENT_POLICY)).toEqual({ refusal: null, liveCapable: 1 });
  });

  it('refuses, naming why, when no registered slot could ever take it', () => {
    const check = replacementCheck(fleet, hosts, { ...any, acceleratorClass: 'b200' }, DEFAULT_PLACEMENT_POLICY);
    expect(check.liveCapable).toBe(0);
    expect(check.refusal).toBe(refusalReason(fleet, { ...any, acceleratorClass: 'b200' }, DEFAULT_PLACEMENT_POLICY));
  });
});
