import { describe, expect, it } from 'vitest';
import { eightGpuHost, simulate, type SimJob } from '../../scripts/bench/packing-sim.js';
import {
  DEFAULT_PLACEMENT_POLICY,
  MAX_RESERVATIONS,
  planQueue,
  type LeaseRequest,
  type SlotView,
} from '../../src/domain/placement.js';

const policy = DEFAULT_PLACEMENT_POLICY;
const ask = (experimentId: string, gpus: number, extra: Partial<LeaseRequest> = {}): LeaseRequest => ({
  experimentId,
  requirements: { acceleratorClass: 'h100', gpuMemoryMb: 0, runtimeTags: [], gpus },
  priority: 0,
  enqueuedAt: 0,
  ...extra,
});
/** Host a: GPU 0 free, GPUs 1-7 leased until 100 s, 200 s, ... 700 s. */
const busyHost = (ends: (index: number) => number | null = (i) => i * 100_000): SlotView[] =>
  eightGpuHost('a').map((slot, i) => (i === 0 ? slot : { ...slot, state: 'leased', leaseEndsBy: ends(i) }));

describe('reservations and backfill', () => {
  it('a blocked K=8 request reserves the GPUs it starts on soonest; a later long run waits, and is told why', () => {
    const plan = planQueue(
      busyHost(),
      [ask('big', 8, { enqueuedAt: 1 }), ask('small', 1, { enqueuedAt: 2, holdSeconds: 1000 })],
      policy,
      0,
    );
    expect(plan.grants).toEqual([]);
    expect(plan.reservations).toEqual([
      { experimentId: 'big', host: 'a', slotIds: eightGpuHost('a').map((s) => s.slotId), gpus: 8, startsBy: 700_000 },
    ]);
    const why = Object.fromEntries(plan.waiting.map((w) => [w.experimentId, w.why]));
    expect(why.big).toBe(
      'waits for 8 GPUs of one class on one host: a has 1 of the 8 h100 GPUs needed free; reserved 8 GPUs of a (0-7: 1 free now, 7 held by leases); estimated start 1970-01-01T00:11:40.000Z (in 11m 40s)',
    );
    expect(why.small).toMatch(
      /^waits for 1 GPU: free GPUs of a are reserved for big \(starts by 1970-01-01T00:11:40.000Z\) and its lease may last 16m 40s, past that start/,
    );
  });

  it('backfills a run onto reserved GPUs only where its hold ends before the reservation starts', () => {
    const queue = [
      ask('big', 8),
      ask('short', 1, { enqueuedAt: 1, holdSeconds: 700 }),
      ask('later', 1, { enqueuedAt: 2, holdSeconds: 60 }),
    ];
    const plan = planQueue(busyHost(), queue, policy, 0);
    // 'short' ends by 700 s, exactly when the reservation starts: it backfills GPU 0.
    expect(plan.grants.map((g) => [g.experimentId, g.slotIds])).toEqual([['short', ['a/gpu0']]]);
    const late = planQueue(busyHost(), [ask('big', 8), ask('long', 1, { enqueuedAt: 1, holdSeconds: 701 })], policy, 0);
    expect(late.grants).toEqual([]);
    // A run with no known end never backfills.
    const unknown = planQueue(busyHost(), [ask('big', 8), ask('open', 1, { enqueuedAt: 1 })], policy, 0);
    expect(unknown.grants).toEqual([]);
    expect(unknown.waiting[1]!.why).toMatch(/its lease has no known end, so it never backfills/);
  });

  it('a lease with no known end makes the start unknown, and nothing backfills the reserved GPUs', () => {
    const plan = planQueue(
      busyHost((i) => (i === 3 ? null : i * 1000)),
      [ask('big', 8), ask('tiny', 1, { enqueuedAt: 1, holdSeconds: 1 })],
      policy,
      0,
    );
    expect(plan.grants).toEqual([]);
    expect(plan.reservations[0]!.startsBy).toBeNull();
    expect(plan.waiting[0]!.why).toMatch(/estimated start unknown/);
  });

  it('small runs still use GPUs nobody reserved', () => {
    const slots = [
      ...busyHost(),
      ...eightGpuHost('b').map((slot, i) =>
        i < 6 ? { ...slot, state: 'leased' as const, leaseEndsBy: 900_000 } : slot,
      ),
    ];
    const plan = planQueue(
      slots,
      [ask('big', 8), ask('s1', 1, { enqueuedAt: 1 }), ask('s2', 1, { enqueuedAt: 2 })],
      policy,
      0,
    );
    expect(plan.reservations.map((r) => [r.experimentId, r.host])).toEqual([['big', 'a']]);
    expect(plan.grants.map((g) => g.slotIds[0])).toEqual(['b/gpu6', 'b/gpu7']);
  });

  it('gives every request not granted a reason, and holds at most MAX_RESERVATIONS reservations', () => {
    const full = eightGpuHost('a').map((slot, i) => ({
      ...slot,
      state: 'leased' as const,
      leaseEndsBy: (i + 1) * 1000,
    }));
    const queue = Array.from({ length: 40 }, (_, i) => ask(`r${i}`, 1 + (i % 2), { enqueuedAt: i }));
    const plan = planQueue(full, queue, policy, 0);
    expect(plan.waiting.map((w) => w.experimentId).sort()).toEqual(queue.map((r) => r.experimentId).sort());
    expect(plan.waiting.every((w) => w.why.length > 20)).toBe(true);
    expect(plan.reservations.length).toBeLessThanOrEqual(MAX_RESERVATIONS);
    // No GPU is held twice.
    const held = plan.reservations.flatMap((r) => r.slotIds);
    expect(new Set(held).size).toBe(held.length);
    expect(plan.waiting.at(-1)!.why).toMatch(
      /reservations a pass holds are taken by runs ahead of it|offline, draining or reserved/,
    );
  });
});

describe('bounded work on a large fleet', () => {
  it('once nothing is free and the reservations are taken, the rest wait with a reason and no search', () => {
    const fleet = Array.from({ length: 5 }, (_, h) => eightGpuHost(`h${h}`))
      .flat()
      .map((slot, i) => ({ ...slot, state: 'leased' as const, leaseEndsBy: (i + 1) * 1000 }));
    const queue = Array.from({ length: 40 }, (_, i) => ask(`r${i}`, 1, { enqueuedAt: i }));
    const plan = planQueue(fleet, queue, policy, 0);
    expect(plan.reservations).toHaveLength(MAX_RESERVATIONS);
    // Each waiting 1-GPU run holds the GPU that frees first, in queue order.
    expect(plan.reservations.map((r) => r.startsBy)).toEqual(Array.from({ length: 16 }, (_, i) => (i + 1) * 1000));
    expect(plan.waiting[16]!.why).toBe(
      'waits for 1 GPU: no GPU in the fleet is free and the 16 reservations a pass holds are taken by runs ahead of it (17th of the runs waiting)',
    );
  });
});

describe('no starvation: a K=8 request between two waves of 1-GPU runs', () => {
  // Wave 1 fills the host; the K=8 request arrives; wave 2 arrives. Each 1-GPU run takes 100 s
  // (kill limit 120 s), the K=8 run 50 s (limit 60 s).
  const wave = (name: string, arrival: number): SimJob[] =>
    Array.from({ length: 8 }, (_, i) => ({ id: `${name}${i}`, arrival, gpus: 1, duration: 90 + i, hold: 120 }));
  const jobs = [...wave('first', 0), { id: 'big', arrival: 1, gpus: 8, duration: 50, hold: 60 }, ...wave('second', 2)];
  const startOf = (runs: ReturnType<typeof simulate>['runs'], id: string) => runs.find((r) => r.job.id === id)!.start;

  it('starts before any run of the later wave', () => {
    const { runs } = simulate(eightGpuHost('a'), jobs);
    const big = startOf(runs, 'big');
    expect(big).toBe(97); // when the last run of wave 1 ends
    for (let i = 0; i < 8; i++) expect(startOf(runs, `second${i}`)).toBeGreaterThanOrEqual(big + 50);
  });

  it('without reservations the later wave overtakes it (the starvation reservations prevent)', () => {
    const { runs } = simulate(eightGpuHost('a'), jobs, { maxReservations: 0 });
    expect(startOf(runs, 'big')).toBeGreaterThan(
      Math.max(...runs.filter((r) => r.job.id.startsWith('second')).map((r) => r.start)),
    );
  });

  it('short runs of the later wave backfill without delaying it', () => {
    const short = wave('quick', 2).map((job) => ({ ...job, duration: 5, hold: 10 }));
    // Wave 1 ends one GPU at a time from 90 s: quick runs (limit 10 s) fit before the reservation's
    // start estimate, 120 s.
    const { runs } = simulate(eightGpuHost('a'), [
      ...wave('first', 0),
      { id: 'big', arrival: 1, gpus: 8, duration: 50, hold: 60 },
      ...short,
    ]);
    // Backfill never delays it past the start its reservation promised (wave 1's kill limits: 120 s).
    expect(startOf(runs, 'big')).toBeLessThanOrEqual(120);
    expect(runs.filter((r) => r.job.id.startsWith('quick') && r.start < startOf(runs, 'big')).length).toBeGreaterThan(
      0,
    );
  });
});
