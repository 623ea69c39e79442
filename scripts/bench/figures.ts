/** Pure figures of a fleet run: how long it took, how busy the slots were, how long a slot sat idle. */

/** One job's training process as it saw itself: wall-clock seconds since the epoch, and its slot. */
export interface JobSpan {
  job: string;
  slot: string;
  start: number;
  end: number;
}

export interface FleetFigures {
  jobs: number;
  makespanSeconds: number;
  /** The share of slot-time spent inside jobs, over the whole makespan. */
  utilization: number;
  /** Previous job's exit → next job's start on the same slot, in milliseconds. */
  gapP50Ms: number | null;
  gapP95Ms: number | null;
}

/** The value below which `p` of the sorted values fall (nearest rank). */
export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

export const median = (values: number[]): number | null => percentile(values, 0.5);

/** `value / bare` as the bench's ratio column (`-` where either is missing or the bare one is 0). */
export function ratioOf(value: number | null, bare: number | null): string {
  return value === null || bare === null || bare === 0 ? '-' : `${(value / bare).toFixed(2)}x`;
}

/**
 * Gaps only count while work was waiting: a slot that idles because the queue is empty is not slow
 * dispatch. So a gap is counted for a slot's next job only (every job after its first).
 */
export function dispatchGapsMs(spans: JobSpan[]): number[] {
  const bySlot = new Map<string, JobSpan[]>();
  for (const span of spans) bySlot.set(span.slot, [...(bySlot.get(span.slot) ?? []), span]);
  const gaps: number[] = [];
  for (const runs of bySlot.values()) {
    runs.sort((a, b) => a.start - b.start);
    for (let i = 1; i < runs.length; i++) gaps.push((runs[i]!.start - runs[i - 1]!.end) * 1000);
  }
  return gaps;
}

export function fleetFigures(spans: JobSpan[], slots: number, makespanSeconds: number): FleetFigures {
  const busy = spans.reduce((sum, span) => sum + (span.end - span.start), 0);
  const gaps = dispatchGapsMs(spans);
  return {
    jobs: spans.length,
    makespanSeconds,
    utilization: makespanSeconds > 0 ? busy / (slots * makespanSeconds) : 0,
    gapP50Ms: median(gaps),
    gapP95Ms: percentile(gaps, 0.95),
  };
}

/** Parses the stamps file the bench job appends to: `<job> <slot> <start> <end>` per line. */
export function parseStamps(text: string): JobSpan[] {
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => {
      const [job, slot, start, end] = line.trim().split(/\s+/);
      return { job: job!, slot: slot!, start: Number(start), end: Number(end) };
    });
}

/**
 * A dispatch gap in two parts, per slot's next job: previous exit → the next run's `running` (lease
 * released and granted, environment, record), then `running` → its process's first stamp (worktree,
 * supervisor, interpreter start). `runningAt` holds each job's epoch ms of `running`.
 */
export function gapParts(spans: JobSpan[], runningAt: ReadonlyMap<string, number>) {
  const bySlot = new Map<string, JobSpan[]>();
  for (const span of spans) bySlot.set(span.slot, [...(bySlot.get(span.slot) ?? []), span]);
  const toRunning: number[] = [];
  const toStart: number[] = [];
  for (const runs of bySlot.values()) {
    runs.sort((a, b) => a.start - b.start);
    for (let i = 1; i < runs.length; i++) {
      const running = runningAt.get(runs[i]!.job);
      if (running === undefined) continue;
      toRunning.push(running - runs[i - 1]!.end * 1000);
      toStart.push(runs[i]!.start * 1000 - running);
    }
  }
  return { toRunning, toStart };
}

/**
 * The dispatch gaps of the slots whose next run was already validated and waiting (`queuedAt`, epoch
 * ms) when the previous one exited: the pool's and the worker's time alone. Under load a burst's
 * validation can outlast a short job, and then the plain gap measures validation, not dispatch.
 */
export function waitingGapsMs(spans: JobSpan[], queuedAt: ReadonlyMap<string, number>): number[] {
  const bySlot = new Map<string, JobSpan[]>();
  for (const span of spans) bySlot.set(span.slot, [...(bySlot.get(span.slot) ?? []), span]);
  const gaps: number[] = [];
  for (const runs of bySlot.values()) {
    runs.sort((a, b) => a.start - b.start);
    for (let i = 1; i < runs.length; i++) {
      const queued = queuedAt.get(runs[i]!.job);
      const exit = runs[i - 1]!.end * 1000;
      if (queued !== undefined && queued <= exit) gaps.push(runs[i]!.start * 1000 - exit);
    }
  }
  return gaps;
}

/**
 * CPU per job from two readings of each process: the difference over `jobs`, in ms, per process
 * and in total. A process missing from either reading (it exited) is left out of both.
 */
export function cpuPerJobMs(
  before: Record<string, number | null>,
  after: Record<string, number | null>,
  jobs: number,
): { parts: Record<string, number>; totalMs: number } {
  const parts: Record<string, number> = {};
  for (const [name, start] of Object.entries(before)) {
    const end = after[name];
    if (start === null || end === null || end === undefined) continue;
    parts[name] = ((end - start) * 1000) / jobs;
  }
  return { parts, totalMs: Object.values(parts).reduce((sum, ms) => sum + ms, 0) };
}

/** One transfer's figure: the median time over its runs, as MB/s (10^6 bytes), and beside a baseline's. */
export interface TransferFigure {
  medianSeconds: number;
  megabytesPerSecond: number;
  /** This transfer's median time over the baseline's (2.00 means it took twice as long). */
  timeRatio: number | null;
}

export function transferFigure(bytes: number, seconds: number[], baselineSeconds?: number[]): TransferFigure | null {
  const mid = median(seconds);
  if (mid === null || mid <= 0) return null;
  const baseline = baselineSeconds ? median(baselineSeconds) : null;
  return {
    medianSeconds: mid,
    megabytesPerSecond: bytes / 1e6 / mid,
    timeRatio: baseline && baseline > 0 ? mid / baseline : null,
  };
}

/** `412.3 MB/s  0.81 s  2.40× the plain copy's time`, in columns. */
export function formatTransfer(figure: TransferFigure | null, baselineName = 'the plain copy'): string {
  if (figure === null) return 'no figure';
  const rate = `${figure.megabytesPerSecond.toFixed(1)} MB/s`.padStart(12);
  const time = `${figure.medianSeconds.toFixed(2)} s`.padStart(9);
  const ratio = figure.timeRatio === null ? '' : `  ${figure.timeRatio.toFixed(2)}× ${baselineName}'s time`;
  return `${rate} ${time}${ratio}`;
}
