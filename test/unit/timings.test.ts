import { describe, expect, it } from 'vitest';
import { computeTimings, type ObservedTimes } from '../../src/domain/timings.js';

const start = 1_000_000;
const observed: ObservedTimes = {
  setup: { seconds: 2.04, cached: false },
  processStartMs: start,
  processEndMs: start + 7_300,
  firstProgressMs: start + 1_250,
  lastProgressMs: start + 6_050,
};
const autoresearchBlock = {
  val_bpb: 0.9979,
  training_seconds: 4.0,
  total_seconds: 6.9,
  peak_vram_mb: 45060.2,
  num_steps: 230,
};

describe('computeTimings', () => {
  it('takes training and total from the --- block and measures startup and evaluation around the progress lines', () => {
    expect(computeTimings(observed, autoresearchBlock)).toEqual({
      setupSeconds: 2,
      setupCached: false,
      startupSeconds: 1.3,
      trainingSeconds: 4.0,
      evaluationSeconds: 1.3,
      totalSeconds: 6.9,
      processSeconds: 7.3,
    });
  });

  it("prefers the script's own startup_seconds and eval_seconds when it prints them", () => {
    const timings = computeTimings(observed, { ...autoresearchBlock, startup_seconds: 0.8, eval_seconds: 1.1 });
    expect(timings.startupSeconds).toBe(0.8);
    expect(timings.evaluationSeconds).toBe(1.1);
  });

  it('a cached setup is recorded as such; no setup phase gives nulls', () => {
    expect(computeTimings({ ...observed, setup: { seconds: 0.01, cached: true } }, autoresearchBlock)).toMatchObject({
      setupSeconds: 0,
      setupCached: true,
    });
    expect(computeTimings({ ...observed, setup: null }, autoresearchBlock)).toMatchObject({
      setupSeconds: null,
      setupCached: null,
    });
  });

  it('a crash (no --- block) has no evaluation span and no reported figures; a script without progress lines has no startup span', () => {
    expect(computeTimings(observed, null)).toEqual({
      setupSeconds: 2,
      setupCached: false,
      startupSeconds: 1.3,
      trainingSeconds: null,
      evaluationSeconds: null,
      totalSeconds: null,
      processSeconds: 7.3,
    });
    const silent = computeTimings({ ...observed, firstProgressMs: null, lastProgressMs: null }, autoresearchBlock);
    expect(silent).toMatchObject({ startupSeconds: null, evaluationSeconds: null, processSeconds: 7.3 });
  });

  it('a setup that failed never started the process', () => {
    expect(
      computeTimings(
        {
          setup: { seconds: 1.5, cached: false },
          processStartMs: null,
          processEndMs: null,
          firstProgressMs: null,
          lastProgressMs: null,
        },
        null,
      ),
    ).toEqual({
      setupSeconds: 1.5,
      setupCached: false,
      startupSeconds: null,
      trainingSeconds: null,
      evaluationSeconds: null,
      totalSeconds: null,
      processSeconds: null,
    });
  });

  it('ignores non-numeric block values', () => {
    expect(computeTimings(observed, { training_seconds: 'n/a', total_seconds: 'NaN' }).trainingSeconds).toBeNull();
  });
});
