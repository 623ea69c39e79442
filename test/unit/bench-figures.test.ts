import { describe, expect, it } from 'vitest';
import {
  cpuPerJobMs,
  dispatchGapsMs,
  fleetFigures,
  formatTransfer,
  gapParts,
  parseStamps,
  percentile,
  ratioOf,
  transferFigure,
  waitingGapsMs,
} from '../../scripts/bench/figures.js';

describe("the bench's fleet figures", () => {
  const spans = parseStamps(
    [
      'a s0 100.0 105.0',
      'b s1 100.0 105.0',
      // s0: the next job starts 50 ms after a exits; s1: 250 ms after b.
      'c s0 105.05 110.05',
      'd s1 105.25 110.25',
      '',
    ].join('\n'),
  );

  it('reads the stamps the job writes', () => {
    expect(spans[2]).toEqual({ job: 'c', slot: 's0', start: 105.05, end: 110.05 });
    expect(spans).toHaveLength(4);
  });

  it('measures the dispatch gap per slot, previous exit to next start', () => {
    expect(dispatchGapsMs(spans).map((gap) => Math.round(gap))).toEqual([50, 250]);
  });

  it("splits each gap at the next run's running event", () => {
    const runningAt = new Map([
      ['c', 105_020],
      ['d', 105_100],
    ]);
    const parts = gapParts(spans, runningAt);
    expect(parts.toRunning.map(Math.round)).toEqual([20, 100]);
    expect(parts.toStart.map(Math.round)).toEqual([30, 150]);
    // A job without a known running time is left out of both.
    expect(gapParts(spans, new Map()).toRunning).toEqual([]);
  });

  it('gives makespan, utilization over every slot, and gap percentiles', () => {
    const figures = fleetFigures(spans, 2, 11);
    // 20 s of jobs over 2 slots x 11 s.
    expect(figures.utilization).toBeCloseTo(20 / 22, 6);
    expect(Math.round(figures.gapP50Ms!)).toBe(50);
    expect(Math.round(figures.gapP95Ms!)).toBe(250);
    expect(fleetFigures([], 8, 0)).toMatchObject({ utilization: 0, gapP50Ms: null, gapP95Ms: null });
  });

  it('takes percentiles by nearest rank', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(values, 0.5)).toBe(50);
    expect(percentile(values, 0.95)).toBe(95);
    expect(percentile([7], 0.95)).toBe(7);
    expect(percentile([], 0.5)).toBeNull();
  });

  it('charges each process its CPU per job, leaving out one that exited between the readings', () => {
    const before = { server: 10, orchestrator: 4, worker: 2, gone: 1 };
    const after = { server: 14, orchestrator: 6, worker: 3, gone: null };
    const { parts, totalMs } = cpuPerJobMs(before, after, 40);
    expect(parts).toEqual({ server: 100, orchestrator: 50, worker: 25 });
    expect(totalMs).toBe(175);
  });
});

describe("the bench's store figures", () => {
  it('takes the median time of a transfer as MB/s, and its ratio to the baseline', () => {
    // 100 MB: runs of 0.5, 0.4 and 2.0 s (median 0.5 s); the plain copy's median 0.25 s.
    const figure = transferFigure(100e6, [0.5, 0.4, 2.0], [0.3, 0.25, 0.2]);
    expect(figure).toEqual({ medianSeconds: 0.5, megabytesPerSecond: 200, timeRatio: 2 });
    expect(formatTransfer(figure)).toBe("  200.0 MB/s    0.50 s  2.00× the plain copy's time");
    expect(transferFigure(100e6, [0.5])).toMatchObject({ timeRatio: null });
    expect(formatTransfer(transferFigure(100e6, [0.5]))).toBe('  200.0 MB/s    0.50 s');
  });

  it('gives no figure without a run', () => {
    expect(transferFigure(100e6, [])).toBeNull();
    expect(formatTransfer(null)).toBe('no figure');
  });
});

describe("the bench's ratio column", () => {
  it('is expctl over bare, and a dash where either figure is missing or the bare one is zero', () => {
    expect(ratioOf(612, 75)).toBe('8.16x');
    expect(ratioOf(36.07, 25.6)).toBe('1.41x');
    expect(ratioOf(null, 75)).toBe('-');
    expect(ratioOf(612, null)).toBe('-');
    expect(ratioOf(612, 0)).toBe('-');
  });
});

describe("the bench's dispatch gaps where a run was waiting", () => {
  it("count a slot's next run only when it was queued by the previous run's exit", () => {
    const spans = parseStamps(['a s0 10.0 12.0', 'b s0 12.2 14.0', 'c s0 15.0 16.0', 'd s1 10.0 11.0'].join('\n'));
    // b was queued at 11 s (before a's exit at 12 s); c only at 14.5 s, after b's exit: its gap waited on validation.
    const queuedAt = new Map([
      ['b', 11_000],
      ['c', 14_500],
    ]);
    const gaps = waitingGapsMs(spans, queuedAt);
    expect(gaps).toHaveLength(1);
    expect(gaps[0]).toBeCloseTo(200, 6);
  });
});
