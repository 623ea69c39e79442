/**
 * The bench's sections on one stack (server, orchestrator and workers as separate processes), each
 * against the same jobs run bare in the same session. Each returns its figures and the targets they
 * are held to; the bench prints them all at the end.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { CatalogReader } from '../../src/catalog/catalog.js';
import { submitExperiment } from '../../src/client/experiments.js';
import { TRAIN_HEARTBEAT_TIMEOUT_SECONDS } from '../../src/domain/limits.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { configurePoolUpdate, onlineHostsQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { signAs } from '../../src/client/sign.js';
import type { DrillStack, StackProcess } from '../drills/stack.js';
import { waitUntil } from '../drills/wait.js';
import { childrenCpuSeconds, cpuOf } from './cpu.js';
import { cpuPerJobMs, fleetFigures, gapParts, median, percentile, type FleetFigures, type JobSpan } from './figures.js';
import { runBare, runExpctl, type JobRepo } from './jobs.js';

const FAKE_BIN = fileURLToPath(new URL('../../test/fixtures/bin/', import.meta.url));
const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));

export interface BenchContext {
  stack: DrillStack;
  dir: string;
  repo: JobRepo;
  quick: boolean;
  /** The search section's variant length (s) and count, where the command line sets them. */
  search?: { seconds?: number; variants?: number };
}

/** One figure held to its target; `met` null where the figure could not be taken. */
export interface TargetCheck {
  section: string;
  figure: string;
  value: string;
  target: string;
  met: boolean | null;
}

const seconds = (value: number) => `${value.toFixed(2)} s`;
const millis = (value: number | null) => (value === null ? '-' : `${value.toFixed(0)} ms`);
const percent = (value: number) => `${(value * 100).toFixed(1)} %`;
const mib = (bytes: number | null) => (bytes === null ? '-' : `${(bytes / 2 ** 20).toFixed(0)} MiB`);

/** nvidia-smi's answer for `count` fake A100s, uuids unique to `host`. */
async function fakeFleet(dir: string, host: string, count: number): Promise<{ csv: string; fakeBin: string }> {
  const hex = Buffer.from(host).toString('hex').slice(0, 8).padEnd(8, '0');
  const rows = Array.from(
    { length: count },
    (_, i) =>
      `${i}, GPU-${hex}-0000-0000-0000-${String(i).padStart(12, '0')}, NVIDIA A100-SXM4-80GB, 81920, 0, 0, 30, 550.54.15, 0`,
  );
  const csv = path.join(dir, `fleet-${host}.csv`);
  await fs.writeFile(csv, `${rows.join('\n')}\n`);
  return { csv, fakeBin: FAKE_BIN };
}

export async function startWorkers(ctx: BenchContext, hosts: string[], gpusEach: number, runtimeTag: string) {
  const workers: StackProcess[] = [];
  for (const host of hosts)
    workers.push(await ctx.stack.startWorker(host, 0, runtimeTag, await fakeFleet(ctx.dir, host, gpusEach)));
  return workers;
}

export async function stopWorkers(workers: StackProcess[]): Promise<void> {
  await Promise.all(workers.map((worker) => worker.kill('SIGTERM')));
}

function describeFleet(label: string, figures: FleetFigures): string {
  return (
    `  ${label.padEnd(8)} makespan ${seconds(figures.makespanSeconds)}, utilization ${percent(figures.utilization)}, ` +
    `dispatch gap p50 ${millis(figures.gapP50Ms)} / p95 ${millis(figures.gapP95Ms)}`
  );
}

/** The processes a run's CPU is charged to: the server, the orchestrator, the workers (with their children). */
function stackProcesses(ctx: BenchContext, workers: StackProcess[]): Record<string, number> {
  const processes: Record<string, number> = {};
  if (ctx.stack.serverPid !== undefined) processes['server'] = ctx.stack.serverPid;
  if (ctx.stack.orchestrator) processes['orchestrator'] = ctx.stack.orchestrator.pid;
  workers.forEach((worker, i) => (processes[workers.length > 1 ? `worker ${i}` : 'worker'] = worker.pid));
  return processes;
}

/**
 * Runs the same jobs bare, then through expctl, reading CPU time around each: the bare jobs are this
 * process's children; expctl's cost is the stack's processes'.
 */
async function sideBySide(
  ctx: BenchContext,
  workers: StackProcess[],
  bareRun: () => ReturnType<typeof runBare>,
  expctlRun: () => ReturnType<typeof runExpctl>,
) {
  const bareBefore = await childrenCpuSeconds();
  const bare = await bareRun();
  const bareCpuSeconds = (await childrenCpuSeconds()) - bareBefore;
  const processes = stackProcesses(ctx, workers);
  const before = await cpuOf(processes);
  const run = await expctlRun();
  const after = await cpuOf(processes);
  return { bare, run, bareCpuSeconds, before, after };
}

/** One line: CPU per job through expctl, by process, beside the bare job's. */
function describeCpu(
  jobs: number,
  measured: { bareCpuSeconds: number; before: Record<string, number | null>; after: Record<string, number | null> },
): string {
  const { parts, totalMs } = cpuPerJobMs(measured.before, measured.after, jobs);
  const byProcess = Object.entries(parts)
    .map(([name, ms]) => `${name} ${ms.toFixed(0)}`)
    .join(', ');
  return (
    `  cpu      per job: expctl ${totalMs.toFixed(0)} ms (${byProcess}; a worker's includes its git, ` +
    `supervisors and jobs), bare ${((measured.bareCpuSeconds * 1000) / jobs).toFixed(0)} ms`
  );
}

/** fleet: 8 fake GPUs, 40 jobs of 5 s submitted at once, against `xargs -P 8`. */
export async function fleetSection(ctx: BenchContext): Promise<TargetCheck[]> {
  const jobs = ctx.quick ? 16 : 40;
  const jobSeconds = ctx.quick ? 2 : 5;
  const slots = 8;
  console.log(`fleet: ${slots} fake GPUs on one host, ${jobs} jobs of ${jobSeconds} s submitted at once`);
  const workers = await startWorkers(ctx, ['fleet'], slots, 'bench-fleet');
  try {
    const stamps = path.join(ctx.dir, 'fleet-stamps');
    const measured = await sideBySide(
      ctx,
      workers,
      () => runBare(ctx.repo, { jobs, seconds: jobSeconds, parallel: slots, stamps }),
      () =>
        runExpctl(ctx.stack.client, ctx.stack.credential, ctx.repo, {
          jobs,
          seconds: jobSeconds,
          stamps,
          tag: `bench-fleet-${Date.now()}`,
          runtimeTag: 'bench-fleet',
        }),
    );
    const { bare, run } = measured;
    const baseline = fleetFigures(bare.spans, slots, bare.makespanSeconds);
    const figures = fleetFigures(run.spans, slots, run.makespanSeconds);
    const ratio = figures.makespanSeconds / baseline.makespanSeconds;
    console.log(describeFleet('xargs', baseline));
    console.log(describeFleet('expctl', figures));
    console.log(
      `  ratio    makespan ${ratio.toFixed(2)}x, utilization ${((figures.utilization / baseline.utilization) * 100).toFixed(1)} % of the baseline's; ` +
        `submitting took ${seconds(run.submitSeconds)}`,
    );
    const firstStart = Math.min(...run.spans.map((span) => span.start)) * 1000;
    const lastEnd = Math.max(...run.spans.map((span) => span.end)) * 1000;
    console.log(
      `  expctl   first job started ${seconds((firstStart - run.startedAtMs) / 1000)} after submission began; ` +
        `last result ${seconds((run.doneAtMs - lastEnd) / 1000)} after the last job ended`,
    );
    await describePhases(ctx, run.results, run.spans);
    console.log(describeCpu(jobs, measured));
    return [
      {
        section: 'fleet',
        figure: 'makespan / xargs -P 8',
        value: `${ratio.toFixed(2)}x`,
        target: '<= 1.10x',
        met: ratio <= 1.1,
      },
      {
        section: 'fleet',
        figure: 'utilization / baseline',
        value: percent(figures.utilization / baseline.utilization),
        target: '>= 95 %',
        met: figures.utilization / baseline.utilization >= 0.95,
      },
      {
        section: 'fleet',
        figure: 'dispatch gap p50',
        value: millis(figures.gapP50Ms),
        target: '<= 100 ms',
        met: figures.gapP50Ms === null ? null : figures.gapP50Ms <= 100,
      },
      {
        section: 'fleet',
        figure: 'dispatch gap p95',
        value: millis(figures.gapP95Ms),
        target: '<= 300 ms',
        met: figures.gapP95Ms === null ? null : figures.gapP95Ms <= 300,
      },
    ];
  } finally {
    await stopWorkers(workers);
  }
}

/** Where a fleet run's time went, from the catalog's records: validation, and each gap's two parts. */
async function describePhases(ctx: BenchContext, results: { experiment_id: string | null }[], spans: JobSpan[]) {
  const reader = await CatalogReader.open(ctx.stack.catalogPath);
  const validation: number[] = [];
  const runningAt = new Map<string, number>();
  try {
    for (const result of results) {
      const record = result.experiment_id ? await reader.get(result.experiment_id) : null;
      if (!record) continue;
      const queued = eventAt(record.events, 'queued');
      const running = eventAt(record.events, 'running');
      if (queued !== null) validation.push(queued - Date.parse(record.submittedAt));
      if (running !== null) runningAt.set(result.experiment_id!, running);
    }
  } finally {
    await reader.close();
  }
  const parts = gapParts(spans, runningAt);
  const p50p95 = (values: number[]) => `${millis(median(values))} / ${millis(percentile(values, 0.95))}`;
  console.log(
    `  expctl   validation p50/p95 ${p50p95(validation)}; each gap = exit -> running ${p50p95(parts.toRunning)} ` +
      `(release, grant, environment, record) + running -> start ${p50p95(parts.toStart)} (worktree, process)`,
  );
}

/** Epoch ms of a record's first event of `status`. */
function eventAt(events: { at: string; status: string }[], status: string): number | null {
  const event = events.find((e) => e.status === status);
  return event ? Date.parse(event.at) : null;
}

/** overhead: one 1 s job at a time, through the API and through `expctl run`, against the bare script. */
export async function overheadSection(ctx: BenchContext): Promise<TargetCheck[]> {
  const runs = ctx.quick ? 3 : 10;
  console.log(`overhead: ${runs} sequential runs of a 1 s job on one fake GPU`);
  const workers = await startWorkers(ctx, ['overhead'], 1, 'bench-overhead');
  const catalog = () => CatalogReader.open(ctx.stack.catalogPath);
  try {
    const stamps = path.join(ctx.dir, 'overhead-stamps');
    const env = { BENCH_SECONDS: '1', BENCH_STAMPS: stamps, BENCH_JOB: 'bare' };
    const bare: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      await execa('python3', [ctx.repo.script], { env });
      bare.push(performance.now() - t);
    }
    const api: number[] = [];
    const phases: Record<string, number[]> = {
      validate: [],
      'lease + environment': [],
      'worktree + process start': [],
      decision: [],
    };
    const tag = `bench-overhead-${Date.now()}`;
    for (let i = 0; i < runs; i++) {
      await fs.rm(stamps, { force: true });
      const t = performance.now();
      const { handle } = await submitExperiment(
        ctx.stack.client,
        {
          tag,
          hypothesis: `overhead ${i}`,
          category: 'other',
          command: ['python3', 'bench_job.py'],
          repo: ctx.repo.repo,
          commit: ctx.repo.commit,
          requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['bench-overhead'] },
          env: { BENCH_SECONDS: '1', BENCH_STAMPS: stamps },
        },
        { credential: ctx.stack.credential },
      );
      const result = await handle.result();
      const doneAt = Date.now();
      api.push(performance.now() - t);
      if (result.status !== 'completed') throw new Error(`overhead run ended ${result.status}: ${result.reason}`);
      const reader = await catalog();
      const record = (await reader.get(result.experiment_id!))!;
      await reader.close();
      const [line] = (await fs.readFile(stamps, 'utf8')).trim().split('\n');
      const [, , start, end] = line!.split(' ');
      const submitted = Date.parse(record.submittedAt);
      const queued = eventAt(record.events, 'queued');
      const running = eventAt(record.events, 'running');
      if (queued !== null) phases.validate!.push(queued - submitted);
      if (queued !== null && running !== null) phases['lease + environment']!.push(running - queued);
      if (running !== null) phases['worktree + process start']!.push(Number(start) * 1000 - running);
      phases.decision!.push(doneAt - Number(end) * 1000);
    }
    const cli: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      const run = await execa(
        process.execPath,
        [
          EXPCTL,
          'run',
          '--tag',
          tag,
          '--hypothesis',
          `cli overhead ${i}`,
          '--category',
          'other',
          '--repo',
          ctx.repo.repo,
          '--commit',
          ctx.repo.commit,
          '--runtime-tag',
          'bench-overhead',
          '--env',
          'BENCH_SECONDS=1',
          '--env',
          `BENCH_STAMPS=${stamps}`,
          '--json',
          '--',
          'python3',
          'bench_job.py',
        ],
        { env: ctx.stack.env(), extendEnv: false, reject: false },
      );
      if (run.exitCode !== 0) throw new Error(`expctl run exited ${run.exitCode}: ${run.stderr || run.stdout}`);
      cli.push(performance.now() - t);
    }
    const bareMs = median(bare)!;
    const apiOverhead = median(api)! - bareMs;
    const cliOverhead = median(cli)! - bareMs;
    console.log(`  bare python3 bench_job.py:   median ${millis(bareMs)}`);
    console.log(`  submit -> result (API):      median ${millis(median(api))}, overhead ${millis(apiOverhead)}`);
    console.log(`  expctl run (CLI process):    median ${millis(median(cli))}, overhead ${millis(cliOverhead)}`);
    console.log(
      `  where the API's time goes (medians): ${Object.entries(phases)
        .map(([name, values]) => `${name} ${millis(median(values))}`)
        .join(', ')}`,
    );
    return [
      {
        section: 'overhead',
        figure: 'per experiment, API',
        value: millis(apiOverhead),
        target: '<= 300 ms',
        met: apiOverhead <= 300,
      },
      {
        section: 'overhead',
        figure: 'per experiment, expctl run',
        value: millis(cliOverhead),
        target: '<= 300 ms',
        met: cliOverhead <= 300,
      },
    ];
  } finally {
    await stopWorkers(workers);
  }
}

/** scale: 64 slots across 4 worker processes, 400 queued 1 s jobs, against `xargs -P 64`. */
export async function scaleSection(ctx: BenchContext): Promise<TargetCheck[]> {
  const hosts = ctx.quick ? ['scale0', 'scale1'] : ['scale0', 'scale1', 'scale2', 'scale3'];
  const each = ctx.quick ? 8 : 16;
  const slots = hosts.length * each;
  const jobs = ctx.quick ? 64 : 400;
  console.log(`scale: ${slots} fake GPUs across ${hosts.length} worker processes, ${jobs} jobs of 1 s queued at once`);
  const workers = await startWorkers(ctx, hosts, each, 'bench-scale');
  const pool = ctx.stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
  try {
    const before = await pool.describe();
    const stamps = path.join(ctx.dir, 'scale-stamps');
    const measured = await sideBySide(
      ctx,
      workers,
      () => runBare(ctx.repo, { jobs, seconds: 1, parallel: slots, stamps }),
      () =>
        runExpctl(ctx.stack.client, ctx.stack.credential, ctx.repo, {
          jobs,
          seconds: 1,
          stamps,
          tag: `bench-scale-${Date.now()}`,
          runtimeTag: 'bench-scale',
        }),
    );
    const { bare, run } = measured;
    const baseline = fleetFigures(bare.spans, slots, bare.makespanSeconds);
    const figures = fleetFigures(run.spans, slots, run.makespanSeconds);
    const ratio = figures.makespanSeconds / baseline.makespanSeconds;
    console.log(describeFleet('xargs', baseline));
    console.log(describeFleet('expctl', figures));

    // Acquire latency: request → grant of the runs granted before any slot had freed (the first
    // wave), so the figure is the pool's own time, not time spent waiting for a busy fleet.
    const firstExitMs = Math.min(...run.spans.map((span: JobSpan) => span.end)) * 1000;
    const reader = await CatalogReader.open(ctx.stack.catalogPath);
    const acquire: number[] = [];
    const validation: number[] = [];
    for (const result of run.results) {
      const record = (await reader.get(result.experiment_id!))!;
      const queued = eventAt(record.events, 'queued');
      if (queued !== null) validation.push(queued - Date.parse(record.submittedAt));
      if (queued !== null && record.queuedMs !== null && queued + record.queuedMs < firstExitMs)
        acquire.push(record.queuedMs);
    }
    await reader.close();
    const after = await pool.describe();
    let poolRuns = 0;
    for await (const _ of ctx.stack.client.workflow.list({ query: `WorkflowId = '${POOL_WORKFLOW_ID}'` })) poolRuns++;
    console.log(describeCpu(jobs, measured));
    const rss = await Promise.all(workers.map((worker) => worker.peakRssBytes()));
    const acquireP50 = median(acquire);
    console.log(
      `  ratio    makespan ${ratio.toFixed(2)}x; submitting took ${seconds(run.submitSeconds)}; ` +
        `validation p50 ${millis(median(validation))} / p95 ${millis(percentile(validation, 0.95))}`,
    );
    console.log(
      `  acquire  p50 ${millis(acquireP50)} / p95 ${millis(percentile(acquire, 0.95))} (${acquire.length} runs granted before the first exit)`,
    );
    console.log(
      `  pool     history ${after.historyLength} events / ${(Number(after.historySize) / 1024).toFixed(0)} KiB now ` +
        `(${before.historyLength} before), ${poolRuns} runs of the pool workflow so far (continue-as-new)`,
    );
    console.log(
      `  memory   peak RSS: orchestrator ${mib(await ctx.stack.orchestrator!.peakRssBytes())}, ` +
        `workers ${rss.map(mib).join(', ')}`,
    );
    return [
      {
        section: 'scale',
        figure: `makespan / xargs -P ${slots}`,
        value: `${ratio.toFixed(2)}x`,
        target: '<= 1.50x',
        met: ratio <= 1.5,
      },
      {
        section: 'scale',
        figure: 'acquire p50',
        value: millis(acquireP50),
        target: '<= 50 ms',
        met: acquireP50 === null ? null : acquireP50 <= 50,
      },
    ];
  } finally {
    await stopWorkers(workers);
  }
}

/**
 * detect: a worker SIGKILLed during a run, until the run's terminal state and until its host shows
 * offline. The pool's heartbeat limit is set to the training heartbeat limit for the section (and
 * set back after), with a worker reporting every 2 s: one limit for both ways a loss is noticed.
 */
export async function detectSection(ctx: BenchContext): Promise<TargetCheck[]> {
  console.log('detect: SIGKILL of a worker while its run trains');
  const worker = await ctx.stack.startWorker('detect', 0, 'bench-detect', await fakeFleet(ctx.dir, 'detect', 1), [
    '--heartbeat',
    '2',
  ]);
  const previousLimitMs = (await configurePoolLimit(ctx, TRAIN_HEARTBEAT_TIMEOUT_SECONDS * 1000)).previous;
  try {
    const { handle } = await submitExperiment(
      ctx.stack.client,
      {
        tag: `bench-detect-${Date.now()}`,
        hypothesis: 'worker loss',
        category: 'other',
        command: ['python3', 'bench_job.py'],
        repo: ctx.repo.repo,
        commit: ctx.repo.commit,
        requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['bench-detect'] },
        env: { BENCH_SECONDS: '30', BENCH_STAMPS: path.join(ctx.dir, 'detect-stamps') },
        maxReplacements: 0,
      },
      { credential: ctx.stack.credential },
    );
    const files = runFiles(ctx.stack.workerDir('detect'), handle.workflowId);
    await waitUntil(
      () =>
        fs.access(files.record).then(
          () => true,
          () => false,
        ),
      120_000,
    );
    const killedAt = performance.now();
    await worker.kill('SIGKILL');
    const pool = ctx.stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    let offlineSeconds: number | null = null;
    const offline = waitUntil(async () => {
      const online = await pool.query(onlineHostsQuery).catch(() => undefined);
      if (online && !online.some((entry) => entry.host === 'detect')) {
        offlineSeconds = (performance.now() - killedAt) / 1000;
        return true;
      }
      return false;
    }, 180_000).catch(() => undefined);
    const result = await handle.result();
    const terminalSeconds = (performance.now() - killedAt) / 1000;
    await offline;
    const limit = TRAIN_HEARTBEAT_TIMEOUT_SECONDS;
    console.log(
      `  run ended ${result.status} ${seconds(terminalSeconds)} after the kill; host offline after ` +
        `${offlineSeconds === null ? '-' : seconds(offlineSeconds)} (training heartbeat limit and pool heartbeat limit ${limit} s)`,
    );
    return [
      {
        section: 'detect',
        figure: `kill -> ${result.status}`,
        value: seconds(terminalSeconds),
        target: `<= ${limit + 5} s`,
        met: result.status === 'worker_lost' && terminalSeconds <= limit + 5,
      },
      {
        section: 'detect',
        figure: 'kill -> host offline',
        value: offlineSeconds === null ? '-' : seconds(offlineSeconds),
        target: `<= ${limit + 5} s`,
        met: offlineSeconds === null ? null : offlineSeconds <= limit + 5,
      },
    ];
  } finally {
    await worker.kill('SIGKILL');
    await configurePoolLimit(ctx, previousLimitMs);
  }
}

/** Sets the pool's heartbeat limit as the stack's admin; returns the limit it had. */
async function configurePoolLimit(ctx: BenchContext, heartbeatLimitMs: number): Promise<{ previous: number }> {
  const pool = ctx.stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
  const previous = (await pool.query(poolStateQuery)).heartbeatLimitMs;
  const configuration = { heartbeatLimitMs };
  await pool.executeUpdate(configurePoolUpdate, {
    args: [{ ...configuration, authorization: signAs('configure_pool', 'pool', configuration, ctx.stack.credential) }],
  });
  return { previous };
}
