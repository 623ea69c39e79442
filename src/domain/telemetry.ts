/**
 * GPU telemetry of a run and the failure of a GPU while it trains. Pure: the worker's sampler
 * decides with it, the record and reports read it, tests check it.
 */

/** A GPU of the run failed while it trained: the run was stopped and ends gpu_failed, naming it. */
export interface GpuFailure {
  slotId: string;
  index: number;
  uuid: string;
  /** What showed the failure, readable: "nvidia-smi no longer lists GPU 3", "2 uncorrected ECC errors". */
  evidence: string;
  at: string;
}

/** The fields the sampler asks `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` for, in order. */
export const TELEMETRY_QUERY_FIELDS = [
  'index',
  'uuid',
  'utilization.gpu',
  'memory.used',
  'power.draw',
  'temperature.gpu',
  'clocks.sm',
  'clocks_throttle_reasons.active',
  'ecc.errors.uncorrected.volatile.total',
] as const;

/** The sampler's interval unless EXPCTL_TELEMETRY_SECONDS says otherwise. */
export const DEFAULT_TELEMETRY_SECONDS = 5;

/** Points kept per GPU in a run's series: when full, neighbours merge pairwise (each point then covers twice the samples). */
export const MAX_SERIES_POINTS = 60;

/** A GPU whose mean utilization stays under this over at least IDLE_MIN_SAMPLES samples is idle. */
export const IDLE_UTILIZATION_PERCENT = 5;
export const IDLE_MIN_SAMPLES = 3;

/** The code every idle warning starts with, for agents to match on. */
export const GPU_IDLE_WARNING = 'gpu_idle';

/**
 * The throttle reasons of `clocks_throttle_reasons.active`, a bitmask (nvml.h
 * nvmlClocksThrottleReason*, renamed clocks_event_reasons in newer drivers; the bits are the same).
 */
export const THROTTLE_REASON_BITS: readonly [number, string][] = [
  [0x1, 'gpu_idle'],
  [0x2, 'applications_clocks_setting'],
  [0x4, 'sw_power_cap'],
  [0x8, 'hw_slowdown'],
  [0x10, 'sync_boost'],
  [0x20, 'sw_thermal_slowdown'],
  [0x40, 'hw_thermal_slowdown'],
  [0x80, 'hw_power_brake_slowdown'],
  [0x100, 'display_clock_setting'],
];

/** One GPU's row of one telemetry query. Null: nvidia-smi gave no number ([N/A], [Not Supported], ...). */
export interface GpuSample {
  index: number;
  uuid: string;
  utilizationPercent: number | null;
  memoryUsedMb: number | null;
  powerW: number | null;
  temperatureC: number | null;
  smClockMhz: number | null;
  /** The active throttle reasons by name; null where nvidia-smi gives no bitmask. */
  throttleReasons: string[] | null;
  eccUncorrected: number | null;
  /** A cell of the row says the GPU is gone ("[GPU is lost]", "[GPU requires reset]"): that cell's text. */
  lost: string | null;
}

/** One telemetry query as parsed: the GPUs listed, and nvidia-smi's own lines saying a GPU is lost. */
export interface TelemetryReading {
  rows: GpuSample[];
  /** e.g. "Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost. Reboot the system ..." */
  lostReports: string[];
}

/** A cell's text that means the GPU itself is gone, not that the field is unsupported. */
const LOST_CELL = /GPU is lost|requires reset|fallen off the bus/i;
/** A line of nvidia-smi (not a row) that says a GPU is lost or unreachable. */
const LOST_LINE = /GPU is lost|fallen off the bus|requires reset|Unable to determine the device handle/i;

/** A number, or null for nvidia-smi's N/A, [N/A], [Not Supported], [Unknown Error] and the like. */
function cellNumber(raw: string): number | null {
  const text = raw.trim();
  if (text === '' || /^\[.*\]$/.test(text) || /N\/A/.test(text)) return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : null;
}

/** The named reasons of a throttle bitmask ("0x0000000000000004" → ["sw_power_cap"]); null where none is given. */
export function throttleReasonNames(raw: string): string[] | null {
  const text = raw.trim();
  if (!/^0x[0-9a-f]+$/i.test(text)) return null;
  const mask = BigInt(text);
  return THROTTLE_REASON_BITS.filter(([bit]) => (mask & BigInt(bit)) !== 0n).map(([, name]) => name);
}

/**
 * Parses the output of the telemetry query (TELEMETRY_QUERY_FIELDS, csv,noheader,nounits). Lines
 * where nvidia-smi says a GPU is lost are kept as lostReports; any other line that is not a row of
 * the query is an error, named with its line.
 */
export function parseTelemetryQuery(output: string): TelemetryReading {
  const rows: GpuSample[] = [];
  const lostReports: string[] = [];
  const lines = output.split('\n').map((line) => line.trim());
  lines.forEach((line, lineNo) => {
    if (line === '') return;
    const cells = line.split(',').map((cell) => cell.trim());
    const index = cells.length === TELEMETRY_QUERY_FIELDS.length ? cellNumber(cells[0]!) : null;
    if (index === null || !Number.isInteger(index)) {
      if (LOST_LINE.test(line)) return void lostReports.push(line);
      throw new Error(
        `nvidia-smi telemetry line ${lineNo + 1} is not a row of ${TELEMETRY_QUERY_FIELDS.length} fields: "${line}"`,
      );
    }
    const [, uuid, util, memory, power, temperature, clock, throttle, ecc] = cells as [string, ...string[]];
    rows.push({
      index,
      uuid: uuid!,
      utilizationPercent: cellNumber(util!),
      memoryUsedMb: cellNumber(memory!),
      powerW: cellNumber(power!),
      temperatureC: cellNumber(temperature!),
      smClockMhz: cellNumber(clock!),
      throttleReasons: throttleReasonNames(throttle!),
      eccUncorrected: cellNumber(ecc!),
      lost: cells.find((cell) => LOST_CELL.test(cell)) ?? null,
    });
  });
  return { rows, lostReports };
}

/** A GPU of a run, as the sampler follows it. */
export interface RunGpu {
  slotId: string;
  index: number;
  uuid: string;
}

/** One point of a GPU's series: `samples` samples merged, from `seconds` after the run's first sample. */
export interface SeriesPoint {
  seconds: number;
  samples: number;
  /** Mean over the point's samples. */
  utilizationPercent: number | null;
  /** Max over the point's samples. */
  memoryUsedMb: number | null;
  /** Mean over the point's samples. */
  powerW: number | null;
  /** Max over the point's samples. */
  temperatureC: number | null;
}

/** A GPU's summary over the run (null: nvidia-smi gave no number for that field in any sample). */
export interface GpuSummary {
  slotId: string;
  index: number;
  uuid: string;
  samples: number;
  utilizationMeanPercent: number | null;
  utilizationMaxPercent: number | null;
  memoryMaxMb: number | null;
  temperatureMaxC: number | null;
  powerMeanW: number | null;
  /** Power integrated over the time between samples (trapezoids). */
  energyWh: number | null;
  smClockMaxMhz: number | null;
  /** Every throttle reason seen active in any sample, in bit order. */
  throttleReasons: string[];
}

export interface GpuSeries {
  slotId: string;
  index: number;
  points: SeriesPoint[];
}

/** What the record keeps of a run's GPUs: the summary and series per GPU, or why there is none. */
export type GpuTelemetry =
  | {
      available: true;
      intervalSeconds: number;
      /** The first and the last sample: the time the summary covers. */
      startedAt: string;
      endedAt: string;
      /** Queries that failed while the run trained (their samples are missing). */
      failedQueries: number;
      gpus: GpuSummary[];
      series: GpuSeries[];
    }
  | { available: false; reason: string };

/** A running mean, max and the like over the values nvidia-smi gave (nulls skipped). */
interface Stat {
  sum: number;
  count: number;
  max: number | null;
}
const emptyStat = (): Stat => ({ sum: 0, count: 0, max: null });
function addTo(stat: Stat, value: number | null): void {
  if (value === null) return;
  stat.sum += value;
  stat.count++;
  stat.max = stat.max === null ? value : Math.max(stat.max, value);
}
const meanOf = (stat: Stat): number | null => (stat.count === 0 ? null : stat.sum / stat.count);

/** One GPU's accumulation over a run: constant size but for its series, itself bounded. */
export interface GpuAccumulator {
  gpu: RunGpu;
  samples: number;
  utilization: Stat;
  memory: Stat;
  power: Stat;
  temperature: Stat;
  smClock: Stat;
  energyWh: number | null;
  last: { atMs: number; powerW: number | null } | null;
  reasons: Set<string>;
  /** The uncorrected ECC count at the run's first sample that gave one. */
  eccBaseline: number | null;
  series: SeriesPoint[];
  /** Samples per point now (doubles at each merge), and the samples of the point being filled. */
  stride: number;
  pending: { seconds: number; values: GpuSample[] } | null;
}

/** A run's telemetry while it trains: one accumulator per GPU of the run. */
export interface RunTelemetryState {
  startedAtMs: number;
  firstSampleMs: number | null;
  lastSampleMs: number | null;
  intervalSeconds: number;
  failedQueries: number;
  gpus: GpuAccumulator[];
}

export function startRunTelemetry(gpus: RunGpu[], intervalSeconds: number, nowMs: number): RunTelemetryState {
  return {
    startedAtMs: nowMs,
    firstSampleMs: null,
    lastSampleMs: null,
    intervalSeconds,
    failedQueries: 0,
    gpus: gpus.map((gpu) => ({
      gpu,
      samples: 0,
      utilization: emptyStat(),
      memory: emptyStat(),
      power: emptyStat(),
      temperature: emptyStat(),
      smClock: emptyStat(),
      energyWh: null,
      last: null,
      reasons: new Set(),
      eccBaseline: null,
      series: [],
      stride: 1,
      pending: null,
    })),
  };
}

/** The row of a run's GPU in a reading: by UUID, which survives renumbering. */
export function rowOf(reading: TelemetryReading, gpu: RunGpu): GpuSample | undefined {
  return reading.rows.find((row) => row.uuid === gpu.uuid);
}

/** Folds one reading into the run's state (the GPUs it lists; the others miss that sample). */
export function foldReading(state: RunTelemetryState, reading: TelemetryReading, atMs: number): void {
  state.firstSampleMs ??= atMs;
  state.lastSampleMs = atMs;
  for (const acc of state.gpus) {
    const row = rowOf(reading, acc.gpu);
    if (row && row.lost === null) foldSample(acc, row, atMs, (atMs - state.firstSampleMs) / 1000);
  }
}

function foldSample(acc: GpuAccumulator, row: GpuSample, atMs: number, seconds: number): void {
  acc.samples++;
  addTo(acc.utilization, row.utilizationPercent);
  addTo(acc.memory, row.memoryUsedMb);
  addTo(acc.power, row.powerW);
  addTo(acc.temperature, row.temperatureC);
  addTo(acc.smClock, row.smClockMhz);
  for (const reason of row.throttleReasons ?? []) acc.reasons.add(reason);
  if (acc.last && acc.last.powerW !== null && row.powerW !== null) {
    const hours = (atMs - acc.last.atMs) / 3_600_000;
    acc.energyWh = (acc.energyWh ?? 0) + ((acc.last.powerW + row.powerW) / 2) * hours;
  }
  acc.last = { atMs, powerW: row.powerW };
  acc.eccBaseline ??= row.eccUncorrected;
  addToSeries(acc, row, seconds);
}

/** Adds a sample to the GPU's series: into the point being filled, which is pushed once it holds `stride` samples. */
function addToSeries(acc: GpuAccumulator, row: GpuSample, seconds: number): void {
  acc.pending ??= { seconds, values: [] };
  acc.pending.values.push(row);
  if (acc.pending.values.length < acc.stride) return;
  acc.series.push(pointOf(acc.pending.seconds, acc.pending.values));
  acc.pending = null;
  if (acc.series.length >= MAX_SERIES_POINTS) {
    acc.series = halveSeries(acc.series);
    acc.stride *= 2;
  }
}

const round = (value: number | null, digits = 1): number | null =>
  value === null ? null : Math.round(value * 10 ** digits) / 10 ** digits;

function pointOf(seconds: number, values: GpuSample[]): SeriesPoint {
  const stat = (pick: (row: GpuSample) => number | null) => {
    const s = emptyStat();
    for (const row of values) addTo(s, pick(row));
    return s;
  };
  return {
    seconds: round(seconds)!,
    samples: values.length,
    utilizationPercent: round(meanOf(stat((r) => r.utilizationPercent))),
    memoryUsedMb: stat((r) => r.memoryUsedMb).max,
    powerW: round(meanOf(stat((r) => r.powerW))),
    temperatureC: stat((r) => r.temperatureC).max,
  };
}

/** Merges neighbouring points pairwise: half the points, each covering the samples of both. */
export function halveSeries(points: SeriesPoint[]): SeriesPoint[] {
  const merged: SeriesPoint[] = [];
  for (let i = 0; i < points.length; i += 2) {
    const [a, b] = [points[i]!, points[i + 1]];
    merged.push(b ? mergePoints(a, b) : a);
  }
  return merged;
}

function mergePoints(a: SeriesPoint, b: SeriesPoint): SeriesPoint {
  const weighted = (x: number | null, y: number | null) =>
    x === null ? y : y === null ? x : round((x * a.samples + y * b.samples) / (a.samples + b.samples));
  const max = (x: number | null, y: number | null) => (x === null ? y : y === null ? x : Math.max(x, y));
  return {
    seconds: a.seconds,
    samples: a.samples + b.samples,
    utilizationPercent: weighted(a.utilizationPercent, b.utilizationPercent),
    memoryUsedMb: max(a.memoryUsedMb, b.memoryUsedMb),
    powerW: weighted(a.powerW, b.powerW),
    temperatureC: max(a.temperatureC, b.temperatureC),
  };
}

export function summarizeGpu(acc: GpuAccumulator): GpuSummary {
  return {
    slotId: acc.gpu.slotId,
    index: acc.gpu.index,
    uuid: acc.gpu.uuid,
    samples: acc.samples,
    utilizationMeanPercent: round(meanOf(acc.utilization)),
    utilizationMaxPercent: acc.utilization.max,
    memoryMaxMb: acc.memory.max,
    temperatureMaxC: acc.temperature.max,
    powerMeanW: round(meanOf(acc.power), 2),
    energyWh: round(acc.energyWh, 4),
    smClockMaxMhz: acc.smClock.max,
    throttleReasons: THROTTLE_REASON_BITS.map(([, name]) => name).filter((name) => acc.reasons.has(name)),
  };
}

/**
 * The record's telemetry of a run at its end. A run no sample reached says why rather than
 * showing zeros: `why` names the last query's failure, if any.
 */
export function finishRunTelemetry(state: RunTelemetryState, endMs: number, why?: string): GpuTelemetry {
  // startedAt and endedAt are the first and last samples: what the summary covers.
  if (state.gpus.every((acc) => acc.samples === 0))
    return {
      available: false,
      reason: why ?? `no sample was taken: the run ended within its first ${state.intervalSeconds}s sampling interval`,
    };
  return {
    available: true,
    intervalSeconds: state.intervalSeconds,
    startedAt: new Date(state.firstSampleMs ?? state.startedAtMs).toISOString(),
    endedAt: new Date(state.lastSampleMs ?? endMs).toISOString(),
    failedQueries: state.failedQueries,
    gpus: state.gpus.map(summarizeGpu),
    series: state.gpus.map((acc) => ({
      slotId: acc.gpu.slotId,
      index: acc.gpu.index,
      // The point being filled is kept too: the run's last seconds belong in its chart.
      points: acc.pending ? [...acc.series, pointOf(acc.pending.seconds, acc.pending.values)] : [...acc.series],
    })),
  };
}

/**
 * Whether a reading shows one of the run's GPUs failed: gone from the list of a query that
 * answered, marked lost in its row, or with more uncorrected ECC errors than at the run's start.
 * A query that failed as a whole says nothing about one GPU (the health check looks at the host).
 */
export function gpuFailureIn(state: RunTelemetryState, reading: TelemetryReading, at: Date): GpuFailure | null {
  const reported = reading.lostReports.length > 0 ? ` (nvidia-smi: ${reading.lostReports.join('; ')})` : '';
  for (const acc of state.gpus) {
    const { gpu } = acc;
    const failure = (evidence: string): GpuFailure => ({ ...gpu, evidence, at: at.toISOString() });
    const row = rowOf(reading, gpu);
    // Never listed for this run and nothing said lost: not evidence of a failure during it.
    if (!row && acc.samples === 0 && reading.lostReports.length === 0) continue;
    if (!row) return failure(`nvidia-smi no longer lists GPU ${gpu.index} (${gpu.uuid})${reported}`);
    if (row.lost !== null) return failure(`nvidia-smi reports GPU ${gpu.index} (${gpu.uuid}): ${row.lost}`);
    if (acc.eccBaseline !== null && row.eccUncorrected !== null && row.eccUncorrected > acc.eccBaseline) {
      const risen = row.eccUncorrected - acc.eccBaseline;
      return failure(
        `GPU ${gpu.index} (${gpu.uuid}) counted ${risen} new uncorrected ECC error${risen === 1 ? '' : 's'} while the run trained (${acc.eccBaseline} → ${row.eccUncorrected})`,
      );
    }
  }
  return null;
}

/**
 * The warnings a run's telemetry carries: GPUs that stayed nearly idle (mean utilization under
 * IDLE_UTILIZATION_PERCENT over at least IDLE_MIN_SAMPLES samples), usually a script that never
 * put its work on the GPU, or a multi-GPU script that uses fewer GPUs than it was given.
 */
export function telemetryWarnings(telemetry: GpuTelemetry | undefined | null): string[] {
  if (!telemetry?.available) return [];
  const measured = telemetry.gpus.filter((g) => g.samples >= IDLE_MIN_SAMPLES && g.utilizationMeanPercent !== null);
  const idle = measured.filter((g) => g.utilizationMeanPercent! < IDLE_UTILIZATION_PERCENT);
  if (idle.length === 0) return [];
  const each = idle
    .map((g) => `GPU ${g.index} ${g.utilizationMeanPercent!.toFixed(1)}% over ${g.samples} samples`)
    .join(', ');
  const which =
    idle.length === telemetry.gpus.length
      ? `the run's GPU${idle.length === 1 ? '' : 's'} stayed nearly idle`
      : `${idle.length} of the run's ${telemetry.gpus.length} GPUs stayed nearly idle`;
  return [
    `${GPU_IDLE_WARNING}: ${which} (mean utilization ${each}; under ${IDLE_UTILIZATION_PERCENT}%): ` +
      'does the script put its work on the GPU (and on every GPU it was given)?',
  ];
}

/** The summary lines `show` prints: one per GPU, or why there is no telemetry. */
export function telemetryLines(telemetry: GpuTelemetry): string[] {
  if (!telemetry.available) return [`unavailable: ${telemetry.reason}`];
  const num = (value: number | null, unit: string, digits = 0) =>
    value === null ? '-' : `${value.toFixed(digits)}${unit}`;
  return telemetry.gpus.map(
    (g) =>
      `${g.slotId}: ${g.samples} samples, util mean ${num(g.utilizationMeanPercent, '%', 1)} max ${num(g.utilizationMaxPercent, '%')}, ` +
      `mem max ${num(g.memoryMaxMb, ' MiB')}, temp max ${num(g.temperatureMaxC, ' C')}, power mean ${num(g.powerMeanW, ' W', 1)}, ` +
      `energy ${num(g.energyWh, ' Wh', 3)}, SM clock max ${num(g.smClockMaxMhz, ' MHz')}` +
      (g.throttleReasons.length > 0 ? `, throttled: ${g.throttleReasons.join(' ')}` : ''),
  );
}

/** EXPCTL_TELEMETRY_SECONDS: the sampler's interval in seconds, a positive number (default DEFAULT_TELEMETRY_SECONDS). */
export function parseTelemetrySeconds(raw: string | undefined): number {
  if (raw === undefined || raw.trim() === '') return DEFAULT_TELEMETRY_SECONDS;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > 3600)
    throw new Error(`EXPCTL_TELEMETRY_SECONDS must be a number of seconds above 0 and at most 3600, got "${raw}"`);
  return value;
}
