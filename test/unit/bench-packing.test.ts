import { describe, expect, it } from 'vitest';
import { packingWorkload } from '../../scripts/bench-packing.js';
import { eightGpuHost, makespanLowerBound, simulate } from '../../scripts/bench/packing-sim.js';

describe("the bench's packing figures", () => {
  it('bounds the makespan from below by arrivals, total work and wide jobs', () => {
    const job = (id: string, arrival: number, gpus: number, duration: number) => ({
      id,
      arrival,
      gpus,
      duration,
      hold: duration,
    });
    // One long job: its own length.
    expect(makespanLowerBound([job('a', 0, 1, 100)], 16, 2, 8)).toBe(100);
    // 16 GPUs x 100 s of 1-GPU work arriving at once, on 16 GPUs: 100 s; twice that: 200 s.
    expect(
      makespanLowerBound(
        Array.from({ length: 32 }, (_, i) => job(`j${i}`, 0, 1, 100)),
        16,
        2,
        8,
      ),
    ).toBe(200);
    // Three 8-GPU jobs of 100 s on 2 hosts: two at a time at best, 150 s by the wide-job bound.
    expect(
      makespanLowerBound(
        [0, 1, 2].map((i) => job(`w${i}`, 0, 8, 100)),
        16,
        2,
        8,
      ),
    ).toBe(150);
    // Work arriving late counts from its arrival.
    expect(
      makespanLowerBound(
        [job('a', 0, 1, 10), ...Array.from({ length: 16 }, (_, i) => job(`l${i}`, 50, 1, 100))],
        16,
        2,
        8,
      ),
    ).toBe(150);
  });

  it('the simulated schedule never beats the bound, and the workload is the same for a seed', () => {
    const jobs = packingWorkload(40);
    expect(packingWorkload(40)).toEqual(jobs);
    expect(new Set(jobs.map((job) => job.gpus))).toEqual(new Set([1, 2, 4, 8]));
    const result = simulate([...eightGpuHost('a'), ...eightGpuHost('b')], jobs);
    expect(result.runs).toHaveLength(40);
    expect(result.makespan).toBeGreaterThanOrEqual(makespanLowerBound(jobs, 16, 2, 8));
    // No GPU ever runs two jobs at once.
    for (const run of result.runs)
      for (const other of result.runs)
        if (run !== other && run.start < other.end && other.start < run.end)
          expect(run.slotIds.filter((id) => other.slotIds.includes(id))).toEqual([]);
  });
});
