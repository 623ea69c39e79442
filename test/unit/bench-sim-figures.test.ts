import { describe, expect, it } from 'vitest';
import {
  largestHolding,
  nextSearchSize,
  offeredRunsPerSecond,
  perSecond,
  poolOccupancy,
  serverWrites,
  simFigures,
  steadyWindow,
} from '../../scripts/bench/sim-figures.js';

describe("the simulated fleet's figures", () => {
  it('offers the rate that keeps the fleet busy: 1,000 GPUs at 60 s jobs is 16.7 runs/s', () => {
    expect(offeredRunsPerSecond(1000, 60)).toBeCloseTo(16.67, 2);
  });

  it('measures from the end of the first jobs to the end of the feed', () => {
    expect(steadyWindow(1_000, 300, 60)).toEqual({ from: 61_000, to: 301_000 });
    expect(() => steadyWindow(0, 60, 60)).toThrow(/must outlast one job/);
  });

  it('counts placements inside the window and grant latency of the runs that asked in it', () => {
    const window = { from: 10_000, to: 20_000 };
    const figures = simFigures(
      [
        // asked before the window, granted in it: a placement, not a latency sample
        { startedAt: 9_000, requestedAt: 9_000, grantedAt: 10_500 },
        { startedAt: 11_000, requestedAt: 11_010, grantedAt: 11_110 }, // 100 ms
        { startedAt: 12_000, requestedAt: 12_010, grantedAt: 12_310 }, // 300 ms
        { startedAt: 19_000, requestedAt: 19_000, grantedAt: 21_000 }, // 2,000 ms, granted after the window
        // never granted: its wait so far (to the end at 25 s) counts
        { startedAt: 15_000, requestedAt: null, grantedAt: null },
      ],
      window,
      25_000,
    );
    expect(figures.placementsPerSecond).toBeCloseTo(0.3, 5);
    expect(figures.asked).toBe(4);
    expect(figures.waiting).toBe(1);
    expect(figures.grantP50Ms).toBe(300);
    expect(figures.grantP95Ms).toBe(10_000);
    // Without the pool's time, no split.
    expect(figures.atPoolP95Ms).toBeNull();
  });

  it("splits the granted runs' waits into the pool's and the delivery's", () => {
    const figures = simFigures(
      [
        { startedAt: 11_000, requestedAt: 11_000, poolGrantedAt: 11_100, grantedAt: 11_150 },
        { startedAt: 12_000, requestedAt: 12_000, poolGrantedAt: 12_050, grantedAt: 14_050 },
        { startedAt: 13_000, requestedAt: 13_000, poolGrantedAt: null, grantedAt: 13_500 },
      ],
      { from: 10_000, to: 20_000 },
      25_000,
    );
    expect(figures.atPoolP95Ms).toBe(100);
    expect(figures.deliveryP95Ms).toBe(2_000);
  });

  it('turns two readings into a rate', () => {
    expect(perSecond(100, 400, 10)).toBe(30);
    expect(perSecond(100, 400, 0)).toBe(0);
  });
});

describe('the search for the largest fleet under the grant bound', () => {
  const bounds = { boundMs: 1000, start: 16, ceiling: 125, resolution: 8 };

  it('doubles while the bound holds, up to the ceiling', () => {
    expect(nextSearchSize([], bounds)).toBe(16);
    expect(nextSearchSize([{ hosts: 16, grantP95Ms: 200 }], bounds)).toBe(32);
    expect(nextSearchSize([{ hosts: 64, grantP95Ms: 200 }], bounds)).toBe(125);
    expect(nextSearchSize([{ hosts: 125, grantP95Ms: 900 }], bounds)).toBeNull();
  });

  it('halves the gap between the largest that held and the smallest that broke', () => {
    const steps = [
      { hosts: 16, grantP95Ms: 200 },
      { hosts: 32, grantP95Ms: 400 },
      { hosts: 64, grantP95Ms: 3000 },
    ];
    expect(nextSearchSize(steps, bounds)).toBe(48);
    expect(nextSearchSize([...steps, { hosts: 48, grantP95Ms: 800 }], bounds)).toBe(56);
    expect(
      nextSearchSize([...steps, { hosts: 48, grantP95Ms: 800 }, { hosts: 56, grantP95Ms: 1200 }], bounds),
    ).toBeNull();
    expect(largestHolding([...steps, { hosts: 48, grantP95Ms: 800 }, { hosts: 56, grantP95Ms: 1200 }], 1000)).toBe(48);
  });

  it('tries smaller fleets when the first one breaks, and reports none when nothing held', () => {
    expect(nextSearchSize([{ hosts: 16, grantP95Ms: 5000 }], bounds)).toBe(8);
    expect(nextSearchSize([{ hosts: 16, grantP95Ms: null }], bounds)).toBe(8);
    expect(largestHolding([{ hosts: 16, grantP95Ms: 5000 }], 1000)).toBeNull();
  });
});

describe('what a fleet writes to the server', () => {
  it('adds what each run writes and multiplies by the runs a second that keep the GPUs busy', () => {
    const perRun = [
      { events: 24, bytes: 12_000 },
      { events: 5, bytes: 1_000 },
      { events: 6, bytes: 3_000 },
    ];
    const at60 = serverWrites(perRun, 1000, 60);
    expect(at60.runsPerSecond).toBeCloseTo(16.67, 2);
    expect(at60.eventsPerSecond).toBeCloseTo(583.3, 1);
    expect(at60.bytesPerSecond).toBeCloseTo(266_667, 0);
    expect(serverWrites(perRun, 1000, 300).eventsPerSecond).toBeCloseTo(116.7, 1);
  });

  it("reads the pool's ceiling from the share of the window it had a task outstanding", () => {
    const window = { from: 10_000, to: 20_000 };
    const occupancy = poolOccupancy(
      [
        { scheduledAt: 9_000, endedAt: 11_000 }, // 1 s inside, ended inside
        { scheduledAt: 12_000, endedAt: 13_000 }, // 1 s
        { scheduledAt: 19_500, endedAt: 21_000 }, // 0.5 s inside, ended after the window
      ],
      window,
      4,
    );
    expect(occupancy.tasks).toBe(2);
    expect(occupancy.busyFraction).toBeCloseTo(0.25, 5);
    // 4 placements/s with the pool busy a quarter of the time: at least 16/s with it busy throughout
    expect(occupancy.ceilingPerSecond).toBeCloseTo(16, 5);
    expect(poolOccupancy([], window, 4)).toEqual({ tasks: 0, busyFraction: 0, ceilingPerSecond: null });
  });
});
