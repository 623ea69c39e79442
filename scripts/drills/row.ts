/** One drill row: its own tag and workers, the runs it submits, and the counts it reports. */
import crypto from 'node:crypto';
import path from 'node:path';
import { submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { judgeRun, recordedOutcomes, type Expectation, type RunVerdict, type TrackedRun } from './runs.js';
import type { DrillStack, StackProcess } from './stack.js';

export interface DrillContext {
  stack: DrillStack;
  quick: boolean;
  dir: string;
  /** A repository holding train.py and the drill fixtures, committed. */
  source: { repo: string; commit: string };
  /** How long the outage row keeps the server down. */
  outageSeconds: number;
  log: (line: string) => void;
}

export interface RowReport {
  row: string;
  submitted: number;
  lost: number;
  duplicated: number;
  orphaned: number;
  /** Runs that ended in a state other than the one expected (and not counted as lost). */
  wrong: number;
  states: Record<string, number>;
  seconds: number;
  /** Figures and what went wrong, one line each. */
  notes: string[];
  skipped?: string;
  error?: string;
}

let metricSeed = 0;
/** A metric no other run prints, so a result can only be its own run's. */
export function freshMetric(): number {
  metricSeed++;
  return Math.round((1 + metricSeed / 1000 + Math.random() / 1e4) * 1e6) / 1e6;
}

export class Row {
  readonly tag: string;
  readonly runs: TrackedRun[] = [];
  readonly notes: string[] = [];
  /** Extra duplicates found by the row itself (e.g. two experiments for one idempotency key). */
  duplicated = 0;
  /** Processes and wrong outcomes the row found itself, beyond its runs' verdicts (e.g. of a terminated run). */
  orphaned = 0;
  wrong = 0;
  private readonly workers: StackProcess[] = [];
  private count = 0;

  constructor(
    readonly name: string,
    readonly ctx: DrillContext,
  ) {
    this.tag = `drill-${name}-${crypto.randomBytes(3).toString('hex')}`;
  }

  /** A worker process for this row only: its runtime tag is the row's tag; `args` go to `expctl worker`. */
  async worker(suffix: string, slots: number, args: string[] = []): Promise<StackProcess> {
    const proc = await this.ctx.stack.startWorker(this.host(suffix), slots, this.tag, undefined, args);
    this.workers.push(proc);
    return proc;
  }

  host(suffix: string): string {
    return `${this.tag}-${suffix}`;
  }

  /** Restarts a worker this row started (after it was killed), on the same host and work dir. */
  async restartWorker(old: StackProcess, suffix: string, slots: number): Promise<StackProcess> {
    await old.exited;
    const index = this.workers.indexOf(old);
    const proc = await this.ctx.stack.startWorker(this.host(suffix), slots, this.tag);
    if (index >= 0) this.workers[index] = proc;
    else this.workers.push(proc);
    return proc;
  }

  pidFile(label: string): string {
    return path.join(this.ctx.dir, 'pids', `${this.tag}-${label}.pid`);
  }

  /** Submits one run of `script` (a fixture in the drill repository) on this row's workers. */
  async submit(options: {
    label?: string;
    script?: string;
    env?: Record<string, string>;
    idempotencyKey?: string;
    expect?: Expectation['status'];
    extra?: Partial<ExperimentRequestInput>;
    extraPidFiles?: string[];
    /** The metric the script prints (default: a fresh one); resubmits of one key pass the same. */
    metric?: number;
  }): Promise<TrackedRun> {
    const label = options.label ?? `run${++this.count}`;
    const expectStatus = options.expect ?? 'completed';
    const metric = options.metric ?? freshMetric();
    const pidFile = this.pidFile(label);
    const script = options.script ?? 'drill_train.py';
    // drill_train.py keeps a ledger of its executions: a result lost and trained again shows there.
    const ledger =
      script === 'drill_train.py' ? path.join(this.ctx.dir, 'pids', `${this.tag}-${label}.ledger`) : undefined;
    const { experimentId, handle } = await submitExperiment(
      this.ctx.stack.client,
      {
        tag: this.tag,
        hypothesis: `drill ${this.name}: ${label}`,
        category: 'other',
        command: ['python3', script],
        repo: this.ctx.source.repo,
        commit: this.ctx.source.commit,
        requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [this.tag] },
        timeBudgetSeconds: 300,
        env: { VAL_BPB: String(metric), PID_FILE: pidFile, ...(ledger ? { LEDGER: ledger } : {}), ...options.env },
        ...(options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {}),
        ...options.extra,
      },
      { credential: this.ctx.stack.credential },
    );
    // A resubmitted key attaches to the run already tracked.
    const known = this.runs.find((r) => r.experimentId === experimentId);
    if (known) return known;
    const run: TrackedRun = {
      label,
      experimentId,
      handle,
      expect: { status: expectStatus, ...(expectStatus === 'completed' ? { metric } : {}) },
      pidFiles: [pidFile, ...(options.extraPidFiles ?? [])],
      ...(ledger ? { ledger } : {}),
    };
    this.runs.push(run);
    return run;
  }

  /** Judges every run (in parallel) against one deadline, stops the row's workers, and counts. */
  async finish(deadlineMs: number, startedAt: number): Promise<RowReport> {
    const deadline = Date.now() + deadlineMs;
    const verdicts = await Promise.all(this.runs.map((run) => judgeRun(run, deadline)));
    for (const worker of this.workers) {
      const rss = await worker.peakRssBytes();
      if (rss !== null && rss > 300 * 1024 * 1024)
        this.notes.push(`${worker.name} peak RSS ${(rss / 2 ** 20).toFixed(0)} MB`);
    }
    await Promise.all(this.workers.map((worker) => worker.kill('SIGTERM')));
    return await this.report(verdicts, startedAt);
  }

  private async report(verdicts: RunVerdict[], startedAt: number): Promise<RowReport> {
    const outcomes = await recordedOutcomes(
      this.ctx.stack.catalogPath,
      verdicts.map((v) => v.experimentId),
    );
    const states: Record<string, number> = {};
    let duplicated = this.duplicated;
    for (const v of verdicts) {
      const state = v.status ?? 'none';
      states[state] = (states[state] ?? 0) + 1;
      const recorded = outcomes.get(v.experimentId) ?? 0;
      if (recorded > 1) {
        duplicated++;
        this.notes.push(`${v.label}: ${recorded} terminal outcomes recorded`);
      }
      if (v.attempts !== null && v.attempts > 1)
        this.notes.push(`${v.label}: ${v.status} after ${v.attempts} placements`);
      if (v.executions !== null && v.executions.finished > 1) {
        this.notes.push(
          `${v.label}: trained to the end ${v.executions.finished} times (${v.executions.started} starts)`,
        );
      }
      if (v.lost) this.notes.push(`${v.label} lost: ${v.lost}`);
      if (v.wrong) this.notes.push(`${v.label}: ${v.wrong}`);
      if (v.orphans.length)
        this.notes.push(`${v.label} orphaned ${v.orphans.map((o) => `pid ${o.pid} (${o.command})`).join(', ')}`);
    }
    return {
      row: this.name,
      submitted: this.runs.length,
      lost: verdicts.filter((v) => v.lost).length,
      duplicated,
      orphaned: this.orphaned + verdicts.reduce((n, v) => n + v.orphans.length, 0),
      wrong: this.wrong + verdicts.filter((v) => v.wrong).length,
      states,
      seconds: Math.round((Date.now() - startedAt) / 100) / 10,
      notes: this.notes,
    };
  }

  /** Stops the row's workers after an error, so the next row starts clean. */
  async abandon(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.kill('SIGKILL')));
  }
}
