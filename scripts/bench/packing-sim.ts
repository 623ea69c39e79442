/**
 * A virtual-time simulation of the pool's grant passes: jobs arrive, planQueue places them, leases
 * end when their jobs do. No Temporal, no clock: the same pure rule the pool runs, driven event by
 * event, so the bench's packing figures and the no-starvation tests measure the real placement.
 */
import {
  DEFAULT_PLACEMENT_POLICY,
  planQueue,
  type LeaseRequest,
  type PlanOptions,
  type SlotView,
} from '../../src/domain/placement.js';

export interface SimJob {
  id: string;
  /** Seconds from the start of the simulation. */
  arrival: number;
  gpus: number;
  /** How long it really runs, in seconds. */
  duration: number;
  /** The most it may hold its lease (its kill limit), in seconds: at least its duration. */
  hold: number;
  priority?: number;
  tag?: string;
}

export interface SimRun {
  job: SimJob;
  start: number;
  end: number;
  slotIds: string[];
}

export interface SimResult {
  runs: SimRun[];
  /** From the first arrival to the last end, in seconds. */
  makespan: number;
  /** Grant passes run (one per distinct event time). */
  passes: number;
}

/**
 * An 8-GPU host with two 4-GPU NVLink islands (GPUs 0-3 on NUMA 0, 4-7 on NUMA 1), like the
 * fake nvidia-smi's eight-H100 fixture.
 */
export function eightGpuHost(host: string): SlotView[] {
  return Array.from({ length: 8 }, (_, index) => ({
    slotId: `${host}/gpu${index}`,
    host,
    index,
    uuid: `GPU-${host}-${index}`,
    name: 'NVIDIA H100 80GB HBM3',
    acceleratorClass: 'h100',
    memoryMb: 81559,
    taskQueue: `${host}-gpu${index}`,
    runtimeTags: [],
    nvlinkIsland: index < 4 ? 0 : 1,
    numaNode: index < 4 ? 0 : 1,
    state: 'idle' as const,
    draining: false,
  }));
}

/** Runs the jobs through planQueue pass by pass until every one has ended. Throws if one never starts. */
export function simulate(fleet: SlotView[], jobs: SimJob[], options: PlanOptions = {}): SimResult {
  const slots = fleet.map((slot) => ({ ...slot, leaseEndsBy: null as number | null }));
  const byId = new Map(jobs.map((job) => [job.id, job]));
  const arrivals = [...jobs].sort((a, b) => a.arrival - b.arrival || a.id.localeCompare(b.id));
  const queue: LeaseRequest[] = [];
  const running: SimRun[] = [];
  const runs: SimRun[] = [];
  let next = 0;
  let passes = 0;
  let now = arrivals[0]?.arrival ?? 0;
  while (next < arrivals.length || queue.length > 0 || running.length > 0) {
    for (const run of running.filter((r) => r.end <= now)) {
      for (const slotId of run.slotIds) {
        const slot = slots.find((s) => s.slotId === slotId)!;
        slot.state = 'idle';
        slot.leaseEndsBy = null;
      }
      running.splice(running.indexOf(run), 1);
    }
    while (next < arrivals.length && arrivals[next]!.arrival <= now) {
      const job = arrivals[next++]!;
      queue.push({
        experimentId: job.id,
        requirements: { acceleratorClass: 'h100', gpuMemoryMb: 0, runtimeTags: [], gpus: job.gpus },
        priority: job.priority ?? 0,
        enqueuedAt: job.arrival * 1000,
        holdSeconds: job.hold,
        ...(job.tag !== undefined ? { tag: job.tag } : {}),
      });
    }
    passes++;
    const plan = planQueue(slots, queue, DEFAULT_PLACEMENT_POLICY, now * 1000, undefined, options);
    for (const grant of plan.grants) {
      const job = byId.get(grant.experimentId)!;
      const run = { job, start: now, end: now + job.duration, slotIds: grant.slotIds };
      for (const slotId of grant.slotIds) {
        const slot = slots.find((s) => s.slotId === slotId)!;
        slot.state = 'leased';
        slot.leaseEndsBy = (now + job.hold) * 1000;
      }
      running.push(run);
      runs.push(run);
      queue.splice(
        queue.findIndex((request) => request.experimentId === job.id),
        1,
      );
    }
    const upcoming = [...running.map((run) => run.end), ...(next < arrivals.length ? [arrivals[next]!.arrival] : [])];
    if (upcoming.length === 0) {
      if (queue.length > 0)
        throw new Error(`jobs never start: ${plan.waiting.map((w) => `${w.experimentId}: ${w.why}`).join('; ')}`);
      break;
    }
    now = Math.min(...upcoming);
  }
  const first = arrivals[0]?.arrival ?? 0;
  return { runs, makespan: Math.max(first, ...runs.map((run) => run.end)) - first, passes };
}

/** GPU-seconds the jobs do. */
export function gpuSeconds(jobs: SimJob[]): number {
  return jobs.reduce((sum, job) => sum + job.gpus * job.duration, 0);
}

/**
 * A lower bound on any schedule's makespan, computed offline with every job known in advance
 * (the "ideal packing"): no schedule finishes before (a) every job's arrival plus its duration,
 * (b) for every arrival time t, t plus the GPU-seconds of the jobs arriving at or after t spread
 * over every GPU, or (c) for jobs wider than half a host (two of them never share one), t plus
 * their durations arriving at or after t spread over the hosts. Real packing can only do worse:
 * the ratio of this bound to the simulated makespan is a conservative packing efficiency.
 */
export function makespanLowerBound(jobs: SimJob[], gpus: number, hosts: number, gpusPerHost: number): number {
  if (jobs.length === 0) return 0;
  const first = Math.min(...jobs.map((job) => job.arrival));
  let bound = Math.max(...jobs.map((job) => job.arrival + job.duration));
  const times = [...new Set(jobs.map((job) => job.arrival))];
  for (const t of times) {
    const later = jobs.filter((job) => job.arrival >= t);
    bound = Math.max(bound, t + gpuSeconds(later) / gpus);
    const wide = later.filter((job) => job.gpus * 2 > gpusPerHost);
    bound = Math.max(bound, t + wide.reduce((sum, job) => sum + job.duration, 0) / hosts);
  }
  return bound - first;
}

/** Deterministic random numbers in [0, 1) from a seed (mulberry32). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
