import { describe, expect, it } from 'vitest';
import {
  finishRunTelemetry,
  foldReading,
  GPU_IDLE_WARNING,
  gpuFailureIn,
  halveSeries,
  IDLE_MIN_SAMPLES,
  MAX_SERIES_POINTS,
  parseTelemetryQuery,
  parseTelemetrySeconds,
  startRunTelemetry,
  telemetryLines,
  telemetryWarnings,
  throttleReasonNames,
  type GpuTelemetry,
  type RunGpu,
  type SeriesPoint,
} from '../../src/domain/telemetry.js';

// As `nvidia-smi --query-gpu=index,uuid,utilization.gpu,memory.used,power.draw,temperature.gpu,clocks.sm,
// clocks_throttle_reasons.active,ecc.errors.uncorrected.volatile.total --format=csv,noheader,nounits` prints them.
const H100_BUSY = '0, GPU-82c4bd45-e6fe-25fc-e029-7df7c8b7376b, 97, 45123, 612.34, 67, 1980, 0x0000000000000000, 0';
const GEFORCE = '1, GPU-3e34e62f-d88e-f448-415e-be2cbf2c6178, 3, 512, [N/A], 40, 210, 0x0000000000000001, [N/A]';
const NOT_SUPPORTED =
  '2, GPU-2d540dd6-583b-cf11-80dd-cc28edc1dd62, [Not Supported], 0, [Not Supported], N/A, [Unknown Error], [Not Supported], N/A';

const GPU0: RunGpu = { slotId: 'h/gpu0', index: 0, uuid: 'GPU-82c4bd45-e6fe-25fc-e029-7df7c8b7376b' };
const GPU1: RunGpu = { slotId: 'h/gpu1', index: 1, uuid: 'GPU-3e34e62f-d88e-f448-415e-be2cbf2c6178' };

const row = (index: number, uuid: string, util: number, memory: number, power: number | string, ecc = 0) =>
  `${index}, ${uuid}, ${util}, ${memory}, ${power}, 60, 1755, 0x0000000000000004, ${ecc}`;

describe('parseTelemetryQuery', () => {
  it('reads numbers, and N/A, [N/A], [Not Supported] and [Unknown Error] as no number', () => {
    const { rows, lostReports } = parseTelemetryQuery(`${H100_BUSY}\n${GEFORCE}\n${NOT_SUPPORTED}\n`);
    expect(lostReports).toEqual([]);
    expect(rows[0]).toEqual({
      index: 0,
      uuid: GPU0.uuid,
      utilizationPercent: 97,
      memoryUsedMb: 45123,
      powerW: 612.34,
      temperatureC: 67,
      smClockMhz: 1980,
      throttleReasons: [],
      eccUncorrected: 0,
      lost: null,
    });
    expect(rows[1]).toMatchObject({ powerW: null, eccUncorrected: null, throttleReasons: ['gpu_idle'] });
    expect(rows[2]).toMatchObject({
      utilizationPercent: null,
      memoryUsedMb: 0,
      powerW: null,
      temperatureC: null,
      smClockMhz: null,
      throttleReasons: null,
      eccUncorrected: null,
      lost: null,
    });
  });

  it("keeps nvidia-smi's lines about a lost GPU and a row's lost cells", () => {
    const output = [
      H100_BUSY,
      'Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost.  Reboot the system to recover this GPU',
      '3, GPU-80be5c9a-eb7d-2388-ad7c-7d3ee8f87235, [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost]',
    ].join('\n');
    const reading = parseTelemetryQuery(output);
    expect(reading.lostReports).toEqual([expect.stringContaining('GPU is lost')]);
    expect(reading.rows.map((r) => [r.index, r.lost])).toEqual([
      [0, null],
      [3, '[GPU is lost]'],
    ]);
  });

  it('refuses a line that is neither a row nor a lost report, naming it', () => {
    expect(() => parseTelemetryQuery(`${H100_BUSY}\nField "clocks.sm" is not a valid field to query.`)).toThrow(
      /line 2 is not a row of 9 fields: "Field "clocks.sm"/,
    );
    // The fleet query's rows (another field list) are not telemetry rows.
    expect(() =>
      parseTelemetryQuery(
        '0, GPU-82c4bd45-e6fe-25fc-e029-7df7c8b7376b, NVIDIA H100 80GB HBM3, 81559, 0, 0, 47, 580.159.04, 0, 1',
      ),
    ).toThrow(/not a row/);
  });
});

describe('throttleReasonNames', () => {
  it('names the bits of the bitmask', () => {
    expect(throttleReasonNames('0x0000000000000000')).toEqual([]);
    expect(throttleReasonNames('0x0000000000000044')).toEqual(['sw_power_cap', 'hw_thermal_slowdown']);
    expect(throttleReasonNames('[Not Supported]')).toBeNull();
  });
});

describe('a run’s telemetry', () => {
  it('summarizes per GPU: means, maxima, energy by trapezoids and the throttle reasons seen', () => {
    const state = startRunTelemetry([GPU0, GPU1], 5, 0);
    const readings = [
      [row(0, GPU0.uuid, 90, 40000, 600), row(1, GPU1.uuid, 10, 1000, 100)],
      [row(0, GPU0.uuid, 100, 42000, 700), row(1, GPU1.uuid, 20, 1500, 100)],
      [row(0, GPU0.uuid, 80, 41000, 500)], // GPU 1 missing from this one
    ];
    readings.forEach((lines, i) => foldReading(state, parseTelemetryQuery(lines.join('\n')), i * 3_600_000));
    const telemetry = finishRunTelemetry(state, 3 * 3_600_000);
    expect(telemetry.available).toBe(true);
    if (!telemetry.available) return;
    expect(telemetry.gpus[0]).toEqual({
      ...GPU0,
      samples: 3,
      utilizationMeanPercent: 90,
      utilizationMaxPercent: 100,
      memoryMaxMb: 42000,
      temperatureMaxC: 60,
      powerMeanW: 600,
      // (600+700)/2 W for 1 h, then (700+500)/2 W for 1 h.
      energyWh: 1250,
      smClockMaxMhz: 1755,
      throttleReasons: ['sw_power_cap'],
    });
    expect(telemetry.gpus[1]).toMatchObject({ samples: 2, utilizationMeanPercent: 15, energyWh: 100 });
    expect(telemetry.series[0]!.points.map((p) => p.utilizationPercent)).toEqual([90, 100, 80]);
    expect(telemetry.startedAt).toBe(new Date(0).toISOString());
  });

  it('keeps at most MAX_SERIES_POINTS per GPU, merging neighbours, over a long run', () => {
    const state = startRunTelemetry([GPU0], 5, 0);
    const samples = 1000;
    for (let i = 0; i < samples; i++)
      foldReading(state, parseTelemetryQuery(row(0, GPU0.uuid, i % 2 === 0 ? 0 : 100, i, 100)), i * 5000);
    const telemetry = finishRunTelemetry(state, samples * 5000);
    if (!telemetry.available) throw new Error('expected telemetry');
    const points = telemetry.series[0]!.points;
    expect(points.length).toBeLessThanOrEqual(MAX_SERIES_POINTS);
    expect(points.length).toBeGreaterThan(MAX_SERIES_POINTS / 4);
    // Every sample is in exactly one point; merged points average and take maxima.
    expect(points.reduce((n, p) => n + p.samples, 0)).toBe(samples);
    expect(points[0]!.utilizationPercent).toBe(50);
    expect(points[0]!.seconds).toBe(0);
    expect(points.at(-1)!.memoryUsedMb).toBe(samples - 1);
    expect(telemetry.gpus[0]!.samples).toBe(samples);
  });

  it('halves a series by merging pairs weighted by their samples', () => {
    const p = (seconds: number, samples: number, util: number, memory: number): SeriesPoint => ({
      seconds,
      samples,
      utilizationPercent: util,
      memoryUsedMb: memory,
      powerW: null,
      temperatureC: null,
    });
    expect(halveSeries([p(0, 1, 10, 5), p(5, 3, 50, 2), p(20, 1, 0, 1)])).toEqual([
      { ...p(0, 4, 40, 5), powerW: null },
      p(20, 1, 0, 1),
    ]);
  });

  it('says why when no sample reached the run, instead of numbers', () => {
    const state = startRunTelemetry([GPU0], 5, 0);
    expect(finishRunTelemetry(state, 1000)).toEqual({
      available: false,
      reason: 'no sample was taken: the run ended within its first 5s sampling interval',
    });
    expect(finishRunTelemetry(state, 1000, 'nvidia-smi failed: exit 9')).toEqual({
      available: false,
      reason: 'nvidia-smi failed: exit 9',
    });
  });
});

describe('gpuFailureIn', () => {
  const at = new Date('2026-12-07T10:00:00Z');
  const started = () => {
    const state = startRunTelemetry([GPU0, GPU1], 5, 0);
    foldReading(
      state,
      parseTelemetryQuery([row(0, GPU0.uuid, 90, 1, 1, 2), row(1, GPU1.uuid, 90, 1, 1)].join('\n')),
      0,
    );
    return state;
  };

  it('finds nothing while every GPU is listed with the ECC count it started with', () => {
    const reading = parseTelemetryQuery([row(0, GPU0.uuid, 90, 1, 1, 2), row(1, GPU1.uuid, 90, 1, 1)].join('\n'));
    expect(gpuFailureIn(started(), reading, at)).toBeNull();
  });

  it('names a GPU the query no longer lists, with what nvidia-smi said', () => {
    const reading = parseTelemetryQuery(
      `${row(0, GPU0.uuid, 90, 1, 1, 2)}\nUnable to determine the device handle for GPU 0000:3B:00.0: GPU is lost.  Reboot the system to recover this GPU`,
    );
    expect(gpuFailureIn(started(), reading, at)).toEqual({
      ...GPU1,
      at: at.toISOString(),
      evidence: expect.stringMatching(
        /^nvidia-smi no longer lists GPU 1 \(GPU-3e34.*\) \(nvidia-smi: Unable .* GPU is lost/,
      ),
    });
  });

  it('does not call a GPU no sample of the run ever listed failed, unless nvidia-smi says one is lost', () => {
    const state = startRunTelemetry([GPU0, GPU1], 5, 0);
    const reading = parseTelemetryQuery(row(0, GPU0.uuid, 90, 1, 1));
    expect(gpuFailureIn(state, reading, at)).toBeNull();
    const lost = parseTelemetryQuery(
      `${row(0, GPU0.uuid, 90, 1, 1)}\nUnable to determine the device handle for GPU 0000:3B:00.0: Unknown Error`,
    );
    expect(gpuFailureIn(state, lost, at)?.slotId).toBe('h/gpu1');
  });

  it('names a GPU whose row says it is lost', () => {
    const lost = `1, ${GPU1.uuid}, [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost]`;
    const reading = parseTelemetryQuery([row(0, GPU0.uuid, 90, 1, 1, 2), lost].join('\n'));
    expect(gpuFailureIn(started(), reading, at)?.evidence).toBe(
      `nvidia-smi reports GPU 1 (${GPU1.uuid}): [GPU is lost]`,
    );
  });

  it('names a GPU whose uncorrected ECC count rose since the run started, not one that had errors before', () => {
    const reading = parseTelemetryQuery([row(0, GPU0.uuid, 90, 1, 1, 5), row(1, GPU1.uuid, 90, 1, 1)].join('\n'));
    expect(gpuFailureIn(started(), reading, at)).toMatchObject({
      slotId: 'h/gpu0',
      evidence: `GPU 0 (${GPU0.uuid}) counted 3 new uncorrected ECC errors while the run trained (2 → 5)`,
    });
  });
});

describe('telemetryWarnings', () => {
  const telemetry = (utils: (number | null)[], samples = IDLE_MIN_SAMPLES): GpuTelemetry => ({
    available: true,
    intervalSeconds: 5,
    startedAt: '',
    endedAt: '',
    failedQueries: 0,
    series: [],
    gpus: utils.map((u, index) => ({
      slotId: `h/gpu${index}`,
      index,
      uuid: `GPU-${index}`,
      samples,
      utilizationMeanPercent: u,
      utilizationMaxPercent: u,
      memoryMaxMb: 0,
      temperatureMaxC: null,
      powerMeanW: null,
      energyWh: null,
      smClockMaxMhz: null,
      throttleReasons: [],
    })),
  });

  it('warns of a GPU that stayed nearly idle', () => {
    expect(telemetryWarnings(telemetry([0.4]))).toEqual([
      `${GPU_IDLE_WARNING}: the run's GPU stayed nearly idle (mean utilization GPU 0 0.4% over 3 samples; under 5%): does the script put its work on the GPU (and on every GPU it was given)?`,
    ]);
  });

  it('warns of the idle GPUs of a multi-GPU run that used only some', () => {
    expect(telemetryWarnings(telemetry([95, 1, 97, 0]))[0]).toMatch(
      /^gpu_idle: 2 of the run's 4 GPUs stayed nearly idle \(mean utilization GPU 1 1\.0% over 3 samples, GPU 3 0\.0%/,
    );
  });

  it('says nothing of a busy run, of too few samples, of no utilization figure, or without telemetry', () => {
    expect(telemetryWarnings(telemetry([5, 80]))).toEqual([]);
    expect(telemetryWarnings(telemetry([0], IDLE_MIN_SAMPLES - 1))).toEqual([]);
    expect(telemetryWarnings(telemetry([null]))).toEqual([]);
    expect(telemetryWarnings({ available: false, reason: 'CPU slot' })).toEqual([]);
    expect(telemetryWarnings(undefined)).toEqual([]);
  });

  it('prints one summary line per GPU, or why there is none', () => {
    expect(telemetryLines(telemetry([42]))).toEqual([
      'h/gpu0: 3 samples, util mean 42.0% max 42%, mem max 0 MiB, temp max -, power mean -, energy -, SM clock max -',
    ]);
    expect(telemetryLines({ available: false, reason: 'CPU slot' })).toEqual(['unavailable: CPU slot']);
  });
});

describe('parseTelemetrySeconds', () => {
  it('defaults to 5 s and refuses what is not a positive number of seconds', () => {
    expect(parseTelemetrySeconds(undefined)).toBe(5);
    expect(parseTelemetrySeconds('0.2')).toBe(0.2);
    expect(() => parseTelemetrySeconds('0')).toThrow(/EXPCTL_TELEMETRY_SECONDS must be .* got "0"/);
    expect(() => parseTelemetrySeconds('fast')).toThrow(/got "fast"/);
  });
});
