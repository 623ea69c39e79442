/**
 * `npm run bench -- packing [--quick]`: how well the pool packs gang leases, without Temporal.
 * A seeded mixed workload (K in {1, 2, 4, 8}, random durations and arrivals) on 2 hosts x 8 fake
 * H100s (two 4-GPU NVLink islands each) is driven through planQueue in virtual time
 * (scripts/bench/packing-sim.ts): every arrival and every end is one grant pass, as in the pool.
 * Prints GPU-seconds used over GPU-seconds available, the same for an ideal packing computed
 * offline, their ratio, the K=8 runs' waits (p50, p95), and the same workload planned without
 * reservations, where large runs starve behind small ones.
 */
import { performance } from 'node:perf_hooks';
import { percentile } from './bench/figures.js';
import {
  eightGpuHost,
  gpuSeconds,
  makespanLowerBound,
  seededRandom,
  simulate,
  type SimJob,
  type SimResult,
} from './bench/packing-sim.js';

const HOSTS = 2;
const GPUS_PER_HOST = 8;
const SEED = 30;
/** How much work arrives per second, as a fraction of what the fleet can do: enough that runs queue. */
const OFFERED_LOAD = 0.95;

/**
 * Jobs of K = 1 (half), 2, 4 (a fifth each) and 8 GPUs (a tenth), running 1 to 30 minutes
 * (log-uniform), each with a kill limit 10-100 % above its real duration (what the pool knows of
 * when it ends), arriving as a Poisson stream at OFFERED_LOAD of the fleet.
 */
export function packingWorkload(count: number, seed = SEED): SimJob[] {
  const random = seededRandom(seed);
  const sizes = Array.from({ length: count }, () => {
    const draw = random();
    const gpus = draw < 0.5 ? 1 : draw < 0.7 ? 2 : draw < 0.9 ? 4 : 8;
    const duration = Math.round(60 * 30 ** random());
    return { gpus, duration, hold: Math.ceil(duration * (1.1 + 0.9 * random())) };
  });
  const meanWork = sizes.reduce((sum, job) => sum + job.gpus * job.duration, 0) / count;
  const meanGap = meanWork / (OFFERED_LOAD * HOSTS * GPUS_PER_HOST);
  let arrival = 0;
  return sizes.map((size, i) => {
    const job = { id: `k${size.gpus}-${i}`, arrival: Math.round(arrival), ...size };
    arrival += -Math.log(1 - random()) * meanGap;
    return job;
  });
}

interface PackingFigures {
  utilization: number;
  makespan: number;
  k8Waits: number[];
  /** K=4 runs that got one whole NVLink island. */
  k4InOneIsland: number;
  k4: number;
  msPerPass: number;
}

function figures(jobs: SimJob[], result: SimResult, seconds: number): PackingFigures {
  const available = result.makespan * HOSTS * GPUS_PER_HOST;
  const k4 = result.runs.filter((run) => run.job.gpus === 4);
  const island = (slotId: string) => Number(slotId.split('gpu')[1]) >> 2;
  return {
    utilization: gpuSeconds(jobs) / available,
    makespan: result.makespan,
    k8Waits: result.runs.filter((run) => run.job.gpus === 8).map((run) => run.start - run.job.arrival),
    k4InOneIsland: k4.filter((run) => new Set(run.slotIds.map(island)).size === 1).length,
    k4: k4.length,
    msPerPass: (seconds * 1000) / result.passes,
  };
}

const pct = (value: number) => `${(100 * value).toFixed(1)} %`;
const secs = (value: number | null) => (value === null ? 'n/a' : `${Math.round(value)} s`);

export function benchPacking(quick: boolean): void {
  const jobs = packingWorkload(quick ? 80 : 400);
  const fleet = Array.from({ length: HOSTS }, (_, i) => eightGpuHost(`host-${String.fromCharCode(97 + i)}`)).flat();
  const run = (maxReservations?: number) => {
    const t = performance.now();
    const result = simulate(fleet, jobs, maxReservations === undefined ? {} : { maxReservations });
    return figures(jobs, result, (performance.now() - t) / 1000);
  };
  const withReservations = run();
  const without = run(0);
  const used = gpuSeconds(jobs);
  const ideal = makespanLowerBound(jobs, HOSTS * GPUS_PER_HOST, HOSTS, GPUS_PER_HOST);
  const idealUtilization = used / (ideal * HOSTS * GPUS_PER_HOST);
  const count = (k: number) => jobs.filter((job) => job.gpus === k).length;
  console.log(
    `packing: ${HOSTS} hosts x ${GPUS_PER_HOST} fake H100s (two 4-GPU NVLink islands each), ${jobs.length} jobs ` +
      `(K=1: ${count(1)}, K=2: ${count(2)}, K=4: ${count(4)}, K=8: ${count(8)}; seed ${SEED}, offered load ${pct(OFFERED_LOAD)}), ${used} GPU-seconds of work`,
  );
  console.log(
    `  ideal (offline lower bound on the makespan): ${secs(ideal)}, GPU-seconds used / available ${pct(idealUtilization)}`,
  );
  for (const [label, f] of [
    ['with reservations (EASY backfill)', withReservations],
    ['without reservations', without],
  ] as const) {
    console.log(
      `  ${label}: makespan ${secs(f.makespan)}, GPU-seconds used / available ${pct(f.utilization)}, ` +
        `ratio to ideal ${(f.utilization / idealUtilization).toFixed(3)}; ` +
        `K=8 wait p50 ${secs(percentile(f.k8Waits, 0.5))}, p95 ${secs(percentile(f.k8Waits, 0.95))}, max ${secs(Math.max(...f.k8Waits))}; ` +
        `K=4 runs on one whole island ${f.k4InOneIsland}/${f.k4}; ${f.msPerPass.toFixed(2)} ms per grant pass`,
    );
  }
}
