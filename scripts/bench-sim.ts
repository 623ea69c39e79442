/**
 * `npm run bench -- sim`: a simulated fleet of N hosts x 8 fake GPUs, registered with the real pool
 * on the bench's Temporal dev server and kept alive as workers keep themselves (scripts/bench/
 * sim-protocol.ts), in a few processes of many hosts each. A steady stream of runs (sim-run.ts: ask
 * for a GPU, hold it for the job's length, release it) at the rate that keeps the fleet busy; the
 * figures are taken over the steady part of the stream, once the first jobs have ended.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { execa, type ResultPromise } from 'execa';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../src/shared/constants.js';
import { eventTimeMs } from '../src/shared/history-events.js';
import { poolStateQuery } from '../src/workflows/definitions.js';
import type { SimRunTimes } from '../src/workflows/sim-run.js';
import { cpuOf } from './bench/cpu.js';
import type { BenchContext, TargetCheck } from './bench/sections.js';
import {
  largestHolding,
  nextSearchSize,
  offeredRunsPerSecond,
  perSecond,
  poolOccupancy,
  serverWrites,
  simFigures,
  steadyWindow,
  type PoolOccupancy,
  type PoolTask,
  type SearchStep,
  type SimFigures,
  type SimRunRecord,
} from './bench/sim-figures.js';
import { SIM_RUNTIME_TAG } from './bench/sim-protocol.js';
import { replayPoolRuns, type PoolReplay } from './bench/sim-replay.js';
import { costOfOneRun, type RunCost } from './bench/sim-run-cost.js';

const SIM_HOSTS = fileURLToPath(new URL('./bench/sim-hosts.ts', import.meta.url));
const GPUS_PER_HOST = 8;
/** Simulated hosts per process: 125 hosts take 2 processes. */
const HOSTS_PER_PROCESS = 64;
/** The search's bound: the largest fleet whose grant p95 stays under it. */
const GRANT_P95_BOUND_MS = 1000;
/** The longest one call of the bench's own may take: a server that does not answer in it is stalled. */
const CALL_DEADLINE_MS = 15_000;
/** Starts of run workflows in flight at once: enough to keep the offered rate on a slow server. */
const STARTS_IN_FLIGHT = 16;

export interface SimOptions {
  hosts?: number;
  jobSeconds?: number;
  seconds?: number;
  /** The share of the fleet's capacity offered (1: jobs arrive as fast as the GPUs finish them, 16.7/s for 1,000 GPUs at 60 s). */
  load?: number;
  /** Look for the largest fleet whose grant p95 stays under 1 s, up to `hosts`. */
  search?: boolean;
}

interface Measured {
  hosts: number;
  figures: SimFigures;
  offered: number;
  fed: number;
  /** Run starts the server did not answer in time. */
  refused: number;
  pool: {
    eventsPerSecond: number;
    bytesPerSecond: number;
    continuesPerMinute: number;
    continues: number;
    /** Requests waiting at the window's end; null where the pool could not answer. */
    queue: number | null;
    trouble: Awaited<ReturnType<typeof poolTaskTrouble>>;
    /** Bytes of state its current run started with (encrypted). */
    carried: number;
    /** The pool's runs of the window replayed against this code. */
    replay: PoolReplay;
    /** How much of the window the pool had a task outstanding; null where its history could not be read. */
    occupancy: PoolOccupancy | null;
  };
  cpu: Record<string, number>;
  /** The machine's 1-minute load average at the window's end: on a shared machine, the figures' context. */
  loadAverage: number;
}

const fixed = (value: number | null, digits = 0) =>
  value === null || Number.isNaN(value) ? '-' : value.toFixed(digits);

/** The simulated hosts' processes: each joins its share of the hosts and says `ready` once all are online. */
async function startHosts(ctx: BenchContext, hosts: number): Promise<ResultPromise[]> {
  const names = Array.from({ length: hosts }, (_, i) => `sim${i}`);
  const processes: ResultPromise[] = [];
  const logs: string[] = [];
  for (let i = 0; i < names.length; i += HOSTS_PER_PROCESS) {
    const log = path.join(ctx.dir, 'logs', `sim-hosts-${i / HOSTS_PER_PROCESS}.log`);
    logs.push(log);
    const child = execa(process.execPath, ['--import', 'tsx', SIM_HOSTS], {
      env: {
        ...ctx.stack.env(),
        SIM_HOSTS: names.slice(i, i + HOSTS_PER_PROCESS).join(','),
        SIM_GPUS: String(GPUS_PER_HOST),
      },
      extendEnv: false,
      stdin: 'ignore',
      stderr: { file: log, append: true },
      reject: false,
      cleanup: true,
    });
    processes.push(child);
  }
  await Promise.all(
    processes.map(
      (child, i) =>
        new Promise<void>((resolve, reject) => {
          child.stdout!.on('data', (chunk: Buffer) => {
            if (chunk.toString().includes('ready')) resolve();
          });
          void child.then(async (result) => {
            const said = (await fs.readFile(logs[i]!, 'utf8').catch(() => '')).slice(-2000);
            reject(new Error(`a simulated hosts' process exited (${result.exitCode}) while joining:\n${said}`));
          });
        }),
    ),
  );
  return processes;
}

async function stopHosts(processes: ResultPromise[]): Promise<void> {
  for (const child of processes) child.kill('SIGTERM');
  await Promise.all(processes);
}

/** Where the pool's history stood at one moment: its current run, and that run's length and size. */
interface PoolReading {
  runId: string;
  events: number;
  bytes: number;
}

/**
 * The answer, or null where the server gave none within the bench's deadline (a stalled server is
 * a figure). The call's own requests end at the deadline too: none outlives the bench's client.
 */
function timely<T>(client: Client, call: () => Promise<T>): Promise<T | null> {
  return Promise.race([
    client.withDeadline(Date.now() + CALL_DEADLINE_MS, call).catch(() => null),
    new Promise<null>((resolve) => setTimeout(() => resolve(null), CALL_DEADLINE_MS)),
  ]);
}

async function poolReading(client: Client, runId?: string): Promise<PoolReading> {
  const description = await client.workflow.getHandle(POOL_WORKFLOW_ID, runId).describe();
  return {
    runId: description.runId,
    events: description.historyLength,
    bytes: Number(description.historySize ?? 0),
  };
}

/** The bytes of state the pool's current run was started with (what its continue-as-new carried). */
async function carriedStateBytes(client: Client): Promise<number> {
  const { history } = await client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace,
    execution: { workflowId: POOL_WORKFLOW_ID },
    maximumPageSize: 1,
  });
  const payloads = history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads ?? [];
  return payloads.reduce((sum, payload) => sum + (payload.data?.length ?? 0), 0);
}

/** The run `runId` continued from (its first event says), or null for a pool's first run. */
async function previousRun(client: Client, runId: string): Promise<string | null> {
  const { history } = await client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace,
    execution: { workflowId: POOL_WORKFLOW_ID, runId },
    maximumPageSize: 1,
  });
  return history?.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || null;
}

/**
 * The pool's growth since `before`, over every run since (continue-as-new starts a new run): read
 * from the runs themselves, walking the chain back, not from visibility (which may lag a closed run).
 */
async function poolGrowth(client: Client, before: PoolReading) {
  const now = await poolReading(client);
  let events = 0;
  let bytes = 0;
  let continues = 0;
  const runIds: string[] = [];
  for (let run: PoolReading = now; ; ) {
    runIds.unshift(run.runId);
    if (run.runId === before.runId) {
      events += run.events - before.events;
      bytes += run.bytes - before.bytes;
      break;
    }
    events += run.events;
    bytes += run.bytes;
    continues++;
    const previous = await previousRun(client, run.runId);
    if (previous === null) break; // the pool was started afresh meanwhile: counted from its start
    run = await poolReading(client, previous);
  }
  return { events, bytes, continues, runIds };
}

/**
 * The pool's failed and timed-out workflow tasks in its current run, and the last failure's message:
 * where a stalled pool says why.
 */
async function poolTaskTrouble(client: Client): Promise<{ failed: number; timedOut: number; last: string | null }> {
  const history = await client.workflow.getHandle(POOL_WORKFLOW_ID).fetchHistory();
  let failed = 0;
  let timedOut = 0;
  let last: string | null = null;
  for (const event of history.events ?? []) {
    if (event.workflowTaskFailedEventAttributes) {
      failed++;
      last = event.workflowTaskFailedEventAttributes.failure?.message ?? last;
    }
    if (event.workflowTaskTimedOutEventAttributes) timedOut++;
  }
  return { failed, timedOut, last };
}

/** The pool's workflow tasks in its runs `runIds`: when each was scheduled and when it ended. */
async function poolTasks(client: Client, runIds: string[]): Promise<PoolTask[]> {
  const tasks: PoolTask[] = [];
  for (const runId of runIds) {
    const history = await client.workflow.getHandle(POOL_WORKFLOW_ID, runId).fetchHistory();
    let scheduledAt: number | null = null;
    for (const event of history.events ?? []) {
      if (event.workflowTaskScheduledEventAttributes) scheduledAt = eventTimeMs(event);
      const ended =
        event.workflowTaskCompletedEventAttributes ??
        event.workflowTaskFailedEventAttributes ??
        event.workflowTaskTimedOutEventAttributes;
      if (ended && scheduledAt !== null) {
        tasks.push({ scheduledAt, endedAt: eventTimeMs(event) });
        scheduledAt = null;
      }
    }
  }
  return tasks;
}

/** Starts `rate` runs a second for `seconds`, each holding its GPU for `jobSeconds`. */
async function feed(ctx: BenchContext, rate: number, seconds: number, jobSeconds: number) {
  const client = ctx.stack.client;
  const prefix = `sim-run-${Date.now()}`;
  const total = Math.round(rate * seconds);
  const started: { id: string; startedAt: number }[] = [];
  const inFlight = new Set<Promise<unknown>>();
  let refused = 0;
  const begin = Date.now();
  const end = begin + seconds * 1000;
  // The stream ends on time: a server too slow to start runs at the rate is itself the figure (fed/s).
  for (let i = 0; i < total && Date.now() < end; i++) {
    const due = begin + (i * 1000) / rate;
    if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
    while (inFlight.size >= STARTS_IN_FLIGHT) await Promise.race(inFlight);
    const id = `${prefix}-${i}`;
    const startedAt = Date.now();
    const start = client
      .withDeadline(Date.now() + CALL_DEADLINE_MS, () =>
        client.workflow.start('simRunWorkflow', {
          workflowId: id,
          taskQueue: CONTROL_TASK_QUEUE,
          args: [
            {
              requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [SIM_RUNTIME_TAG] },
              holdMs: jobSeconds * 1000,
              tag: 'bench-sim',
            },
          ],
        }),
      )
      .then(
        () => started.push({ id, startedAt }),
        () => refused++,
      );
    inFlight.add(start);
    void start.finally(() => inFlight.delete(start));
  }
  await Promise.all(inFlight);
  return { begin, started, refused, fedSeconds: (Date.now() - begin) / 1000 };
}

/** Each run's times once it ended; runs still open at `deadline` are terminated and count as still waiting. */
async function collect(client: Client, started: { id: string; startedAt: number }[], deadline: number) {
  const records: SimRunRecord[] = [];
  const queue = [...started];
  let stalled = false;
  const worker = async () => {
    for (let run = queue.shift(); run; run = queue.shift()) {
      const handle = client.workflow.getHandle(run.id);
      const left = deadline - Date.now();
      const times = await Promise.race([
        // Its long polls end at the deadline too, so none is left retrying once the bench closes its client.
        client.withDeadline(Math.max(Date.now(), deadline), () => handle.result() as Promise<SimRunTimes>),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), Math.max(0, left))),
      ]).catch(() => null);
      // Ended so the next fleet size starts clean; not asked of a server that stopped answering.
      if (times === null && !stalled)
        stalled = (await timely(client, () => handle.terminate('bench sim ended'))) === null;
      records.push({
        startedAt: run.startedAt,
        requestedAt: times?.requestedAt ?? null,
        grantedAt: times?.grantedAt ?? null,
        poolGrantedAt: times?.poolGrantedAt ?? null,
      });
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return records;
}

/** One fleet size: hosts joined, the stream fed, the figures of its steady window. */
async function measureFleet(
  ctx: BenchContext,
  hosts: number,
  { jobSeconds, seconds, load }: { jobSeconds: number; seconds: number; load: number },
): Promise<Measured> {
  const gpus = hosts * GPUS_PER_HOST;
  const rate = offeredRunsPerSecond(gpus, jobSeconds) * load;
  const joinStart = Date.now();
  const hostProcesses = await startHosts(ctx, hosts);
  console.log(
    `  ${hosts} hosts x ${GPUS_PER_HOST} fake GPUs (${gpus}) joined in ${((Date.now() - joinStart) / 1000).toFixed(1)} s ` +
      `by ${hostProcesses.length} process(es); feeding ${rate.toFixed(1)} runs/s of ${jobSeconds} s ` +
      `(${(load * 100).toFixed(0)} % of its capacity) for ${seconds} s; load average before ${os.loadavg()[0]!.toFixed(1)}`,
  );
  const client = ctx.stack.client;
  const processes: Record<string, number> = {
    server: ctx.stack.serverPid!,
    orchestrator: ctx.stack.orchestrator!.pid,
  };
  hostProcesses.forEach((child, i) => (processes[`hosts ${i}`] = child.pid!));
  try {
    const feedStart = Date.now();
    const window = steadyWindow(feedStart, seconds, jobSeconds);
    const readings = (async () => {
      await new Promise((resolve) => setTimeout(resolve, window.from - Date.now()));
      const before = {
        at: Date.now(),
        pool: await timely(client, () => poolReading(client)),
        cpu: await cpuOf(processes),
      };
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, window.to - Date.now())));
      const at = Date.now();
      const cpu = await cpuOf(processes);
      const grown = before.pool === null ? null : await timely(client, () => poolGrowth(client, before.pool!));
      const after = { at, pool: grown ?? { events: NaN, bytes: NaN, continues: NaN, runIds: [] }, cpu };
      const trouble = (await timely(client, () => poolTaskTrouble(client))) ?? {
        failed: NaN,
        timedOut: NaN,
        last: 'the pool history could not be read',
      };
      // A pool whose workflow task keeps failing answers no query: that is a figure too.
      const queue = await client.workflow
        .getHandle(POOL_WORKFLOW_ID)
        .query(poolStateQuery)
        .then(
          (state) => state.queue.length,
          () => null,
        );
      return { before, after, queue, trouble, carried: (await timely(client, () => carriedStateBytes(client))) ?? NaN };
    })();
    const fed = await feed(ctx, rate, seconds, jobSeconds);
    const { before, after, queue, trouble, carried } = await readings;
    const records = await collect(client, fed.started, Date.now() + (2 * jobSeconds + 60) * 1000);
    const replay = await replayPoolRuns(client, after.pool.runIds).catch((error: Error) => ({
      runs: after.pool.runIds.length,
      failures: [`the replay could not run: ${error.message}`],
    }));
    const span = (after.at - before.at) / 1000;
    const figures = simFigures(records, window, window.to);
    const tasks = await timely(client, () => poolTasks(client, after.pool.runIds));
    const occupancy = tasks && poolOccupancy(tasks, { from: before.at, to: after.at }, figures.placementsPerSecond);
    const cpu: Record<string, number> = {};
    for (const name of Object.keys(processes)) {
      const start = before.cpu[name];
      const end = after.cpu[name];
      if (typeof start === 'number' && typeof end === 'number') cpu[name] = perSecond(start, end, span);
    }
    return {
      hosts,
      figures,
      offered: rate,
      fed: fed.started.length / fed.fedSeconds,
      refused: fed.refused,
      pool: {
        eventsPerSecond: after.pool.events / span,
        bytesPerSecond: after.pool.bytes / span,
        continuesPerMinute: (after.pool.continues / span) * 60,
        continues: after.pool.continues,
        queue,
        trouble,
        carried,
        replay,
        occupancy,
      },
      cpu,
      loadAverage: os.loadavg()[0]!,
    };
  } finally {
    await stopHosts(hostProcesses);
  }
}

function describe(m: Measured): void {
  const { figures, pool } = m;
  const perPlacement = (value: number) =>
    figures.placementsPerSecond > 0 ? (value / figures.placementsPerSecond).toFixed(1) : '-';
  console.log(
    `  placements ${figures.placementsPerSecond.toFixed(1)}/s sustained (offered ${m.offered.toFixed(1)}/s, fed ${m.fed.toFixed(1)}/s` +
      `${m.refused > 0 ? `; ${m.refused} starts not answered within ${CALL_DEADLINE_MS / 1000} s` : ''})`,
  );
  console.log(
    `  grant      p50 ${fixed(figures.grantP50Ms)} ms / p95 ${fixed(figures.grantP95Ms)} ms (request -> lease, ` +
      `${figures.asked} runs that asked in the steady window; ${figures.waiting} without a lease at its end; queue then ${pool.queue ?? 'unknown: the pool did not answer'})`,
  );
  console.log(
    `             of which p95 ${fixed(figures.atPoolP95Ms)} ms until the pool granted, ` +
      `p95 ${fixed(figures.deliveryP95Ms)} ms from the pool's grant to the run holding it (both by workflow clocks)`,
  );
  console.log(
    `  pool       ${fixed(pool.eventsPerSecond, 1)} events/s (${perPlacement(pool.eventsPerSecond)} per placement), ` +
      `${fixed(pool.bytesPerSecond / 1024, 1)} KiB/s of history; continue-as-new ${fixed(pool.continuesPerMinute, 1)}/min ` +
      `(${fixed(pool.continues)} in the window; the current run started with ${fixed(pool.carried / 1024)} KiB of state)`,
  );
  if (!(pool.trouble.failed + pool.trouble.timedOut === 0))
    console.log(
      `  pool       its current run has ${fixed(pool.trouble.failed)} failed and ${fixed(pool.trouble.timedOut)} timed-out workflow tasks` +
        `${pool.trouble.last ? `; the last failure: ${pool.trouble.last}` : ''}`,
    );
  const occupancy = pool.occupancy;
  console.log(
    occupancy === null
      ? '  pool tasks the history could not be read'
      : `  pool tasks ${occupancy.tasks} in the window, one outstanding ${(occupancy.busyFraction * 100).toFixed(0)} % of it: ` +
          `one pool would place at least ${fixed(occupancy.ceilingPerSecond, 1)}/s busy throughout, at this cost per placement`,
  );
  console.log(
    `  replay     ${pool.replay.runs} run(s) of the pool replayed against this code: ` +
      (pool.replay.failures.length === 0
        ? 'deterministic'
        : `${pool.replay.failures.length} failed: ${pool.replay.failures.join('; ')}`),
  );
  const cpuLine = Object.entries(m.cpu)
    .map(([name, coreShare]) => `${name} ${(coreShare * 100).toFixed(0)} %`)
    .join(', ');
  const stack = (m.cpu['server'] ?? 0) + (m.cpu['orchestrator'] ?? 0);
  console.log(
    `  cpu        of one core: ${cpuLine}; server + orchestrator ${perPlacement(stack * 1000)} ms per placement ` +
      `(the orchestrator's includes the simulated runs' workflows); load average ${m.loadAverage.toFixed(1)}`,
  );
}

/**
 * What a production server writes per 1,000 GPUs: one real run's experiment and tag histories, plus
 * the pool's share per placement as the stream measured it, at 60 s and 300 s jobs.
 */
function describeServerNeeds(cost: RunCost, measured: Measured): void {
  const { placementsPerSecond } = measured.figures;
  if (placementsPerSecond <= 0 || Number.isNaN(measured.pool.eventsPerSecond)) return;
  const pool = {
    events: measured.pool.eventsPerSecond / placementsPerSecond,
    bytes: measured.pool.bytesPerSecond / placementsPerSecond,
  };
  const kib = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
  console.log(
    `  per run    experiment ${cost.experiment.events} events / ${kib(cost.experiment.bytes)}, tag +${cost.tag.events} / ` +
      `${kib(cost.tag.bytes)} (one real 1 s run), pool ${pool.events.toFixed(1)} / ${kib(pool.bytes)} (per placement above)`,
  );
  for (const jobSeconds of [60, 300]) {
    const writes = serverWrites([cost.experiment, cost.tag, pool], 1000, jobSeconds);
    console.log(
      `  1000 GPUs  at ${jobSeconds} s jobs: ${writes.runsPerSecond.toFixed(1)} runs/s, ${writes.eventsPerSecond.toFixed(0)} events/s, ` +
        `${kib(writes.bytesPerSecond)}/s of history`,
    );
  }
}

export async function simSection(ctx: BenchContext, options: SimOptions = {}): Promise<TargetCheck[]> {
  const hosts = options.hosts ?? (ctx.quick ? 16 : 125);
  const jobSeconds = options.jobSeconds ?? (ctx.quick ? 20 : 60);
  const seconds = options.seconds ?? (ctx.quick ? 60 : 300);
  const stream = { jobSeconds, seconds, load: options.load ?? 1 };
  console.log(`sim: simulated hosts of ${GPUS_PER_HOST} fake GPUs on the real pool, a steady stream of runs`);
  if (!options.search) {
    const cost = await costOfOneRun(ctx);
    const measured = await measureFleet(ctx, hosts, stream);
    describe(measured);
    describeServerNeeds(cost, measured);
    const p95 = measured.figures.grantP95Ms;
    return [
      {
        section: 'sim',
        figure: `grant p95, ${hosts * GPUS_PER_HOST} GPUs`,
        value: `${fixed(p95)} ms`,
        target: `< ${GRANT_P95_BOUND_MS} ms`,
        met: p95 === null ? null : p95 < GRANT_P95_BOUND_MS,
      },
      {
        section: 'sim',
        figure: 'placements / offered',
        value: `${((measured.figures.placementsPerSecond / measured.offered) * 100).toFixed(1)} %`,
        target: '>= 95 %',
        met: measured.figures.placementsPerSecond / measured.offered >= 0.95,
      },
    ];
  }
  const steps: SearchStep[] = [];
  const bounds = { boundMs: GRANT_P95_BOUND_MS, start: Math.min(16, hosts), ceiling: hosts, resolution: 8 };
  for (let size = nextSearchSize(steps, bounds); size !== null; size = nextSearchSize(steps, bounds)) {
    const measured = await measureFleet(ctx, size, stream);
    describe(measured);
    steps.push({ hosts: size, grantP95Ms: measured.figures.grantP95Ms });
  }
  const largest = largestHolding(steps, GRANT_P95_BOUND_MS);
  console.log(
    `  search     largest fleet with grant p95 under ${GRANT_P95_BOUND_MS} ms at ${jobSeconds} s jobs: ` +
      `${largest === null ? 'none tried' : `${largest} hosts (${largest * GPUS_PER_HOST} GPUs)`}` +
      `${largest === hosts ? ' (the ceiling searched)' : ''}; tried ${steps.map((s) => `${s.hosts}: ${fixed(s.grantP95Ms)} ms`).join(', ')}`,
  );
  return [
    {
      section: 'sim',
      figure: `largest fleet, p95 < 1 s`,
      value: largest === null ? '-' : `${largest * GPUS_PER_HOST} GPUs`,
      target: '>= 1000 GPUs',
      met: largest === null ? false : largest * GPUS_PER_HOST >= 1000,
    },
  ];
}
