/**
 * The drill rows. Each breaks one thing on purpose, a bounded number of times, and waits on
 * conditions (a pid file, a state) rather than on time; only the outage's length is a sleep.
 */
import fs from 'node:fs/promises';
import { execa } from 'execa';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { poolStateQuery } from '../../src/workflows/definitions.js';
import { ensureTemporalCli } from '../../src/temporal/temporal-cli.js';
import { SA } from '../../src/shared/search-attributes.js';
import { LONG_RUN_ROWS } from './long-run-row.js';
import { OUTSIDE_ROWS } from './outside-rows.js';
import { freshMetric, type DrillContext, Row } from './row.js';
import { awaitResult, recordedExperiments } from './runs.js';
import type { TrackedRun } from './runs.js';
import { holdsWithin, waitUntil } from './wait.js';

export interface RowSpec {
  name: string;
  what: string;
  /** Rows that stop the Temporal server cannot run against an external cluster. */
  needsLocalServer?: boolean;
  /** Runs the row's faults; returns how long the row's runs may still take to end (ms). */
  run(row: Row, ctx: DrillContext): Promise<number>;
}

const MB = 1024 * 1024;
const fileExists = (file: string) =>
  fs.access(file).then(
    () => true,
    () => false,
  );

/** Waits until every run's training process has written its pid (it is training). */
async function training(runs: TrackedRun[], timeoutMs = 180_000): Promise<void> {
  await waitUntil(
    async () => (await Promise.all(runs.map((r) => fileExists(r.pidFiles[0]!)))).every(Boolean),
    timeoutMs,
  );
}

const pidOf = async (run: TrackedRun) => Number(await fs.readFile(run.pidFiles[0]!, 'utf8'));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const ORDER = ['submitted', 'validating', 'queued', 'running', 'evaluating'];
/** How far a run has come, from its search attribute (readable while the orchestrator is down). */
async function progressOf(run: TrackedRun): Promise<number> {
  const status = (await run.handle.describe().catch(() => undefined))?.typedSearchAttributes.get(SA.status);
  if (status === undefined) return -1;
  const index = ORDER.indexOf(status);
  return index >= 0 ? index : ORDER.length;
}

const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]!;

export const ROWS: RowSpec[] = [
  {
    name: 'worker-kill',
    what: 'SIGKILL the GPU worker during training, restart it (default --max-replacements 1)',
    async run(row, ctx) {
      const kills = ctx.quick ? 1 : 5;
      let worker = await row.worker('a', 2);
      for (let i = 0; i < kills; i++) {
        const runs = [
          await row.submit({ env: { STEPS: '40', STEP_SECONDS: '0.25' } }),
          await row.submit({ env: { STEPS: '40', STEP_SECONDS: '0.25' } }),
        ];
        await training(runs);
        await worker.kill('SIGKILL');
        worker = await row.restartWorker(worker, 'a', 2);
        // Each kill hits runs of its own: wait until these are decided before the next.
        await Promise.all(runs.map((r) => awaitResult(r.handle, Date.now() + 240_000).catch(() => null)));
      }
      return 60_000;
    },
  },
  {
    name: 'orchestrator-kill',
    what: 'SIGKILL the orchestrator at random points of random runs, restart it',
    async run(row, ctx) {
      const kills = ctx.quick ? 1 : 10;
      await row.worker('a', 2);
      const env = { STEPS: '12', STEP_SECONDS: '0.25' };
      for (let i = 0; i < 2; i++) await row.submit({ env });
      for (let i = 0; i < kills; i++) {
        await row.submit({ env });
        await row.submit({ env });
        // A random run reaching a random state is the moment of the kill.
        const target = pick(row.runs.slice(-4));
        const state = 1 + Math.floor(Math.random() * (ORDER.length - 1));
        const reached = await holdsWithin(async () => (await progressOf(target)) >= state, 60_000);
        row.notes.push(`kill ${i + 1}: ${target.label} ${reached ? 'reached' : 'had not reached'} ${ORDER[state]}`);
        await ctx.stack.orchestrator!.kill('SIGKILL');
        await ctx.stack.startOrchestrator();
      }
      return 180_000;
    },
  },
  {
    name: 'server-restart',
    what: 'stop the Temporal dev server (SIGKILL, then SIGTERM on alternate rounds) during training and start it on the same db file',
    needsLocalServer: true,
    async run(row, ctx) {
      const restarts = ctx.quick ? 1 : 3;
      await row.worker('a', 2);
      for (let i = 0; i < restarts; i++) {
        const runs = [
          await row.submit({ env: { STEPS: '30', STEP_SECONDS: '0.25' } }),
          await row.submit({ env: { STEPS: '30', STEP_SECONDS: '0.25' } }),
        ];
        await training(runs);
        const signal = i % 2 === 0 ? 'SIGKILL' : 'SIGTERM';
        const downAt = Date.now();
        await ctx.stack.stopServer(signal);
        await ctx.stack.startServer();
        row.notes.push(
          `restart ${i + 1}: ${signal}, serving again after ${((Date.now() - downAt) / 1000).toFixed(1)} s`,
        );
      }
      return 180_000;
    },
  },
  {
    name: 'outage',
    what: 'server down while runs finish; each must report its real result afterwards',
    needsLocalServer: true,
    async run(row, ctx) {
      await row.worker('a', 2);
      const runs = [
        await row.submit({ env: { STEPS: '20', STEP_SECONDS: '0.25' } }),
        await row.submit({ env: { STEPS: '20', STEP_SECONDS: '0.25' } }),
      ];
      await training(runs);
      const pids = await Promise.all(runs.map(pidOf));
      await ctx.stack.stopServer('SIGTERM');
      const downAt = Date.now();
      const finished = await holdsWithin(async () => pids.every((pid) => !alive(pid)), ctx.outageSeconds * 1000);
      row.notes.push(
        `server down ${ctx.outageSeconds} s; training ${finished ? 'finished' : 'still running'} during the outage`,
      );
      // The outage's length is the point of this row: the one deliberate sleep of the drills.
      await new Promise((r) => setTimeout(r, Math.max(0, downAt + ctx.outageSeconds * 1000 - Date.now())));
      await ctx.stack.startServer();
      return 240_000;
    },
  },
  {
    name: 'pool-terminated',
    what: 'terminate the pool with the Temporal CLI while a run trains and one waits; the next run completes, nothing restarted',
    async run(row, ctx) {
      const worker = await row.worker('a', 1);
      const orchestrator = ctx.stack.orchestrator!;
      const trainingRun = await row.submit({ env: { STEPS: '30', STEP_SECONDS: '0.25' } });
      await training([trainingRun]);
      // The only slot is taken: this one waits (lined up behind the running lease) when the pool goes.
      const queued = await row.submit({ env: { STEPS: '1' } });
      const pool = ctx.stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
      await waitUntil(async () => {
        const { queue, slots } = await pool.query(poolStateQuery);
        const waiting = (id: string | undefined) => id === queued.experimentId;
        return queue.some((r) => waiting(r.experimentId)) || slots.some((e) => waiting(e.next?.lease.experimentId));
      }, 120_000);
      const gone = (await pool.describe()).runId;
      await terminatePool(ctx, 'drill: pool-terminated');
      const terminatedAt = Date.now();
      const healed = await holdsWithin(async () => {
        const running = await pool.describe();
        return running.runId !== gone && running.status.name === 'RUNNING';
      }, 60_000);
      const by = (await orchestrator.log()).includes('the pool was terminated; started it again')
        ? 'the orchestrator'
        : (await worker.log()).includes('the pool was gone')
          ? 'the worker'
          : 'nobody named in the logs';
      row.notes.push(
        healed
          ? `pool running again ${((Date.now() - terminatedAt) / 1000).toFixed(1)} s after the terminate, started by ${by}`
          : 'pool NOT running again within 60 s of the terminate',
      );
      if (!healed) throw new Error('the terminated pool was not started again within 60 s');
      // The next run, submitted to the healed pool.
      await row.submit({ env: { STEPS: '1' } });
      if (worker.done || orchestrator.done) throw new Error('a process exited: the pool healed only by a restart');
      return 180_000;
    },
  },
  {
    name: 'duplicate-keys',
    what: 'concurrent submits, some sharing an idempotency key: one experiment per key',
    async run(row, ctx) {
      const [total, duplicates] = ctx.quick ? [12, 3] : [40, 10];
      const keys = total - duplicates;
      await row.worker('a', 3);
      const metrics = Array.from({ length: keys }, () => freshMetric());
      const submits = Array.from({ length: total }, (_, i) => {
        const key = `key-${i % keys}`;
        return row.submit({ label: key, idempotencyKey: key, metric: metrics[i % keys], env: { STEPS: '1' } });
      });
      const ids = new Set((await Promise.all(submits)).map((run) => run.experimentId));
      row.notes.push(
        `${total} submits with ${duplicates} repeated keys gave ${ids.size} experiment ids (expected ${keys})`,
      );
      const tooMany = (count: number) => Math.max(0, count - keys);
      await Promise.all(row.runs.map((r) => awaitResult(r.handle, Date.now() + 240_000).catch(() => null)));
      const inRecord = (await recordedExperiments(ctx.stack.catalogPath, row.tag)).length;
      const query = `ExpctlTag = '${row.tag}' AND WorkflowType = 'experimentWorkflow'`;
      // Visibility lags a little behind the workflows themselves.
      let visible = 0;
      await holdsWithin(async () => (visible = (await ctx.stack.client.workflow.count(query)).count) >= keys, 15_000);
      row.notes.push(`experiments: ${inRecord} in the record, ${visible} in Temporal visibility`);
      row.duplicated += Math.max(tooMany(ids.size), tooMany(inRecord), tooMany(visible));
      return 60_000;
    },
  },
  {
    name: 'long-line',
    what: 'a script prints one huge line (50 MB quick, 100 MB full)',
    async run(row, ctx) {
      await row.worker('a', 1);
      await row.submit({
        script: 'drill_output.py',
        env: { OUTPUT: 'line', BYTES: String((ctx.quick ? 50 : 100) * MB) },
      });
      return 240_000;
    },
  },
  {
    name: 'flood',
    what: 'a script floods short lines (64 MB quick, 1 GB full)',
    async run(row, ctx) {
      await row.worker('a', 1);
      await row.submit({
        script: 'drill_output.py',
        env: { OUTPUT: 'flood', BYTES: String((ctx.quick ? 64 : 1024) * MB) },
      });
      return ctx.quick ? 240_000 : 900_000;
    },
  },
  {
    name: 'binary',
    what: 'a script prints binary bytes (NULs, invalid UTF-8; 16 MB quick, 256 MB full)',
    async run(row, ctx) {
      await row.worker('a', 1);
      await row.submit({
        script: 'drill_output.py',
        env: { OUTPUT: 'binary', BYTES: String((ctx.quick ? 16 : 256) * MB) },
      });
      return 240_000;
    },
  },
  {
    name: 'escape',
    what: "a setsid'd child and a double-forked daemon outlive the script; one more is canceled",
    async run(row) {
      await row.worker('a', 3);
      for (const mode of ['setsid', 'double_fork']) {
        const escaped = row.pidFile(`${mode}-escaped`);
        await row.submit({
          label: mode,
          script: 'drill_escape.py',
          env: { ESCAPE: mode, ESCAPE_PID_FILE: escaped },
          extraPidFiles: [escaped],
        });
      }
      const escaped = row.pidFile('canceled-escaped');
      const canceled = await row.submit({
        label: 'canceled',
        script: 'drill_escape.py',
        expect: 'canceled',
        env: { ESCAPE: 'double_fork', ESCAPE_PID_FILE: escaped, HANG_AFTER_ESCAPE: '1' },
        extraPidFiles: [escaped],
      });
      await waitUntil(() => fileExists(escaped), 180_000);
      await canceled.handle.cancel();
      return 120_000;
    },
  },
  {
    name: 'kill-supervisor',
    what: 'a script SIGKILLs its own supervisor and trains on (expected: command_failed, nothing left running)',
    async run(row, ctx) {
      await row.worker('a', 1);
      await row.submit({
        script: 'drill_kill_supervisor.py',
        expect: 'command_failed',
        env: { STEPS: ctx.quick ? '20' : '60', STEP_SECONDS: '0.5' },
      });
      return 120_000;
    },
  },
  ...OUTSIDE_ROWS,
  ...LONG_RUN_ROWS,
];

/** Terminates the pool as an operator would, with the real Temporal CLI. */
async function terminatePool(ctx: DrillContext, reason: string): Promise<void> {
  const terminated = await execa(
    await ensureTemporalCli(),
    [
      'workflow',
      'terminate',
      '--workflow-id',
      POOL_WORKFLOW_ID,
      '--reason',
      reason,
      '--address',
      ctx.stack.address,
      '--namespace',
      ctx.stack.options.namespace,
    ],
    { reject: false, all: true },
  );
  if (terminated.exitCode !== 0) throw new Error(`temporal workflow terminate failed: ${terminated.all}`);
}
