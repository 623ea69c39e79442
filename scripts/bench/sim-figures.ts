/** Pure figures of the simulated fleet (`npm run bench -- sim`): rates, the measured window, grant latency. */
import { median, percentile } from './figures.js';

/** One simulated run as the driver saw it: when it was asked for, and (once granted) the run's own times. */
export interface SimRunRecord {
  /** Epoch ms the driver started the run's workflow. */
  startedAt: number;
  /** Epoch ms the run asked the pool, and when its lease arrived; null where no lease came before the end. */
  requestedAt: number | null;
  grantedAt: number | null;
  /** The pool's own clock at the grant (absent: unknown); splits a wait into the pool's and the delivery's. */
  poolGrantedAt?: number | null;
}

/** Runs a second that keep `gpus` GPUs busy with jobs of `jobSeconds` (16.7 for 1,000 GPUs at 60 s). */
export function offeredRunsPerSecond(gpus: number, jobSeconds: number): number {
  return gpus / jobSeconds;
}

/**
 * The steady part of a feed of `seconds` from `feedStart`: from when the first jobs end (the fleet is
 * full, releases and grants both flow) to the feed's end.
 */
export function steadyWindow(feedStart: number, seconds: number, jobSeconds: number): { from: number; to: number } {
  if (seconds <= jobSeconds) throw new Error(`the feed (${seconds} s) must outlast one job (${jobSeconds} s)`);
  return { from: feedStart + jobSeconds * 1000, to: feedStart + seconds * 1000 };
}

export interface SimFigures {
  /** Leases granted inside the window, per second. */
  placementsPerSecond: number;
  /** Request → lease of the runs that asked inside the window, ms; a run still waiting at `endedAt` counts its wait so far. */
  grantP50Ms: number | null;
  grantP95Ms: number | null;
  /** Runs that asked inside the window. */
  asked: number;
  /** Of those, runs that had no lease by `endedAt`. */
  waiting: number;
  /**
   * Of those granted, the p95 of the wait until the pool granted (request → the pool's grant) and
   * of the delivery after it (the pool's grant → the run holding it); null without the pool's time.
   */
  atPoolP95Ms: number | null;
  deliveryP95Ms: number | null;
}

export function simFigures(runs: SimRunRecord[], window: { from: number; to: number }, endedAt: number): SimFigures {
  const seconds = (window.to - window.from) / 1000;
  const inWindow = (at: number | null): at is number => at !== null && at >= window.from && at < window.to;
  const granted = runs.filter((run) => inWindow(run.grantedAt)).length;
  const asked = runs.filter((run) => inWindow(run.requestedAt ?? run.startedAt));
  const waits = asked.map((run) =>
    run.grantedAt !== null && run.requestedAt !== null
      ? run.grantedAt - run.requestedAt
      : endedAt - (run.requestedAt ?? run.startedAt),
  );
  const split = asked.filter(
    (run) => run.requestedAt !== null && run.grantedAt !== null && typeof run.poolGrantedAt === 'number',
  );
  return {
    placementsPerSecond: seconds > 0 ? granted / seconds : 0,
    grantP50Ms: median(waits),
    grantP95Ms: percentile(waits, 0.95),
    asked: asked.length,
    waiting: asked.filter((run) => run.grantedAt === null).length,
    atPoolP95Ms: percentile(
      split.map((run) => run.poolGrantedAt! - run.requestedAt!),
      0.95,
    ),
    deliveryP95Ms: percentile(
      split.map((run) => run.grantedAt! - run.poolGrantedAt!),
      0.95,
    ),
  };
}

/** A counter's growth per second between two readings. */
export function perSecond(before: number, after: number, seconds: number): number {
  return seconds > 0 ? (after - before) / seconds : 0;
}

/** One fleet size tried by the search, and whether its grant p95 stayed under the bound. */
export interface SearchStep {
  hosts: number;
  grantP95Ms: number | null;
}

/**
 * The next fleet size to try, looking for the largest whose grant p95 stays under `boundMs`: double
 * while it holds (up to `ceiling`), then halve the gap between the largest that held and the
 * smallest that did not, to within `resolution` hosts. The first try is `start`; null when the
 * answer is known.
 */
export function nextSearchSize(
  steps: SearchStep[],
  bounds: { boundMs: number; start: number; ceiling: number; resolution: number },
): number | null {
  const { boundMs, start, ceiling, resolution } = bounds;
  if (steps.length === 0) return start;
  const holds = (step: SearchStep) => step.grantP95Ms !== null && step.grantP95Ms < boundMs;
  const held = steps.filter(holds).map((s) => s.hosts);
  const broke = steps.filter((s) => !holds(s)).map((s) => s.hosts);
  const best = held.length > 0 ? Math.max(...held) : 0;
  const worst = broke.length > 0 ? Math.min(...broke) : null;
  if (worst === null) return best >= ceiling ? null : Math.min(ceiling, best * 2);
  if (worst - best <= resolution) return null;
  return best === 0 ? Math.max(1, Math.floor(worst / 2)) : Math.floor((best + worst) / 2);
}

/** The largest fleet the steps show holding the bound, or null where none did. */
export function largestHolding(steps: SearchStep[], boundMs: number): number | null {
  const held = steps.filter((s) => s.grantP95Ms !== null && s.grantP95Ms < boundMs).map((s) => s.hosts);
  const broke = steps.filter((s) => !held.includes(s.hosts)).map((s) => s.hosts);
  const under = held.filter((h) => broke.every((b) => b > h));
  return under.length > 0 ? Math.max(...under) : null;
}

/** What one run writes to the server's history: events and bytes. */
export interface WriteCost {
  events: number;
  bytes: number;
}

/**
 * What a fleet of `gpus` kept busy with jobs of `jobSeconds` writes to the server each second, from
 * what each run writes (its experiment's, its tag's and the pool's share, added).
 */
export function serverWrites(perRun: WriteCost[], gpus: number, jobSeconds: number) {
  const runsPerSecond = offeredRunsPerSecond(gpus, jobSeconds);
  const events = perRun.reduce((sum, cost) => sum + cost.events, 0);
  const bytes = perRun.reduce((sum, cost) => sum + cost.bytes, 0);
  return { runsPerSecond, eventsPerSecond: runsPerSecond * events, bytesPerSecond: runsPerSecond * bytes };
}

/** One workflow task of the pool, from its history: when it was scheduled, and when it ended (completed, failed or timed out). */
export interface PoolTask {
  scheduledAt: number;
  endedAt: number;
}

/** How much of the window the pool's one workflow had a task outstanding, and what that says of its ceiling. */
export interface PoolOccupancy {
  /** Tasks that ended inside the window. */
  tasks: number;
  /** Share of the window with a task scheduled or running (a workflow has one at a time). */
  busyFraction: number;
  /**
   * The placements a second the pool would reach with a task outstanding all the time, at the same
   * cost per placement: a lower bound, since a busier pool takes more messages in each task.
   */
  ceilingPerSecond: number | null;
}

export function poolOccupancy(
  tasks: PoolTask[],
  window: { from: number; to: number },
  placementsPerSecond: number,
): PoolOccupancy {
  const span = window.to - window.from;
  let busy = 0;
  let ended = 0;
  for (const task of tasks) {
    const from = Math.max(task.scheduledAt, window.from);
    const to = Math.min(task.endedAt, window.to);
    if (to > from) busy += to - from;
    if (task.endedAt >= window.from && task.endedAt < window.to) ended++;
  }
  const busyFraction = span > 0 ? Math.min(1, busy / span) : 0;
  return {
    tasks: ended,
    busyFraction,
    ceilingPerSecond: busyFraction > 0 ? placementsPerSecond / busyFraction : null,
  };
}
