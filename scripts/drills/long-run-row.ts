/**
 * The long-run row: a checkpointing run on two hosts whose training host dies outright part way
 * (its worker, the run's supervisor and the training process SIGKILLed at once). The run must
 * resume on the other host from its checkpoint and complete; the row reports the training time
 * lost against the checkpoint interval, and what detection, the fence wait and the restore cost.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_CHECKPOINT_SYNC_MS } from '../../src/domain/limits.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { processAlive } from '../../src/shared/processes.js';
import { attemptDocument } from '../../src/store/fence.js';
import { openStore } from '../../src/store/open.js';
import type { Row } from './row.js';
import type { RowSpec } from './rows.js';
import { awaitResult, runProcesses, type TrackedRun } from './runs.js';
import type { StackProcess } from './stack.js';
import { holdsWithin, waitUntil } from './wait.js';

interface LongRunPlan {
  steps: number;
  stepSeconds: number;
  checkpointSeconds: number;
  /** The row's workers' --fencing-time: a lost run is placed again this + 10 s after its silence. */
  fencingSeconds: number;
  /** The host dies once this share of the steps is trained (and a checkpoint is in the store). */
  killAt: number;
}

const QUICK: LongRunPlan = { steps: 120, stepSeconds: 0.25, checkpointSeconds: 5, fencingSeconds: 10, killAt: 0.6 };
const FULL: LongRunPlan = { steps: 1200, stepSeconds: 0.25, checkpointSeconds: 15, fencingSeconds: 20, killAt: 0.6 };

/** drill_train.py's checkpointing ledger: every step, resume and start with the pid and time that wrote it. */
interface LedgerEvent {
  kind: 'start' | 'step' | 'resumed';
  value: number;
  pid: number;
  atMs: number;
}

async function ledgerEvents(file: string): Promise<LedgerEvent[]> {
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.split('\n').flatMap((line): LedgerEvent[] => {
    const [kind, ...rest] = line.split(' ');
    if (kind === 'start' && rest.length === 2)
      return [{ kind, value: 0, pid: Number(rest[0]), atMs: Number(rest[1]) * 1000 }];
    if ((kind === 'step' || kind === 'resumed') && rest.length === 3)
      return [{ kind, value: Number(rest[0]), pid: Number(rest[1]), atMs: Number(rest[2]) * 1000 }];
    return [];
  });
}

const fileExists = (file: string) =>
  fs.access(file).then(
    () => true,
    () => false,
  );

const seconds = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(1) : '?');

/** The host (row suffix) whose worker has the run's supervisor: the one training it. */
async function trainingHost(row: Row, run: TrackedRun, suffixes: string[]): Promise<string> {
  let found: string | undefined;
  await waitUntil(async () => {
    for (const suffix of suffixes) {
      const dir = row.ctx.stack.workerDir(row.host(suffix));
      if (await fileExists(runFiles(dir, run.experimentId).pidFile)) found = suffix;
    }
    return found !== undefined;
  }, 180_000);
  return found!;
}

/** SIGKILLs the worker, the run's supervisor and its training process at once: the host is gone. */
async function killHost(worker: StackProcess, supervisorPid: number, trainingPid: number): Promise<number> {
  const killedAt = Date.now();
  for (const pid of [worker.pid, supervisorPid, trainingPid]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await worker.exited;
  return killedAt;
}

/** An attempt as `expctl show ID --json` prints it (snake_case, like all of the CLI's JSON). */
interface ShownAttempt {
  host: string;
  started_at: string;
  ended_at: string | null;
  ended: string | null;
  why: string | null;
  trained_seconds: number | null;
  lost_seconds: number | null;
}

/** What `expctl show ID --json` records of the run's attempts and its final outcome's restore. */
async function shownRecord(row: Row, experimentId: string) {
  const shown = await row.ctx.stack.expctl(['show', experimentId, '--json']);
  if (shown.exitCode !== 0) throw new Error(`expctl show ${experimentId} --json failed: ${shown.stderr}`);
  const json = JSON.parse(shown.stdout) as {
    attempt_records?: ShownAttempt[];
    training?: { checkpoint?: { restore?: { restored: boolean; seconds?: number; reason?: string } } } | null;
  };
  return { attempts: json.attempt_records ?? [], restore: json.training?.checkpoint?.restore };
}

/** The fence wait the record names in a lost attempt's reason ("… nor in the 20s its fencing time allows"). */
function fenceWaitSeconds(why: string | null): number | null {
  const match = /nor in the (\d+)s its fencing time allows/.exec(why ?? '');
  return match ? Number(match[1]) : null;
}

/** A finding that makes the row fail: counted as a wrong outcome, and said in the notes. */
function wrong(row: Row, note: string): void {
  row.wrong++;
  row.notes.push(note);
}

export const LONG_RUN_ROWS: RowSpec[] = [
  {
    name: 'long-run',
    what: 'a checkpointing run (5 min; 30 s quick) on two hosts; its host (worker, supervisor, training) is SIGKILLed part way: it resumes on the other host and completes',
    async run(row, ctx) {
      const plan = ctx.quick ? QUICK : FULL;
      const fencing = ['--fencing-time', String(plan.fencingSeconds)];
      const workers: Record<string, StackProcess> = {
        a: await row.worker('a', 1, fencing),
        b: await row.worker('b', 1, fencing),
      };
      const trainingSeconds = plan.steps * plan.stepSeconds;
      const run = await row.submit({
        env: {
          STEPS: String(plan.steps),
          STEP_SECONDS: String(plan.stepSeconds),
          CHECKPOINT_SECONDS: String(plan.checkpointSeconds),
        },
        extra: { timeBudgetSeconds: Math.ceil(trainingSeconds * 3) },
      });
      const ledger = run.ledger!;
      const first = await trainingHost(row, run, Object.keys(workers));
      const workDir = ctx.stack.workerDir(row.host(first));

      // Part way: the share of steps trained, and a checkpoint of attempt 1 in the store.
      const store = await openStore(ctx.stack.env());
      const killStep = Math.floor(plan.steps * plan.killAt);
      const reached = async () =>
        Math.max(0, ...(await ledgerEvents(ledger)).filter((e) => e.kind === 'step').map((e) => e.value));
      await waitUntil(
        async () =>
          (await reached()) >= killStep &&
          (await store.getDocument(attemptDocument(run.experimentId, 1, 'checkpoint'))) !== null,
        (trainingSeconds * 4 + 120) * 1000,
      );
      const supervisorPid = Number(await fs.readFile(runFiles(workDir, run.experimentId).pidFile, 'utf8'));
      const trainingPid = Number(await fs.readFile(run.pidFiles[0]!, 'utf8'));
      const killedAt = await killHost(workers[first]!, supervisorPid, trainingPid);
      // On a dead host nothing of the run trains on: whatever is left of it is an orphan.
      const cleared = await holdsWithin(
        async () => !processAlive(trainingPid) && (await runProcesses(run.experimentId, [])).length === 0,
        3_000,
      );
      if (!cleared) {
        const left = await runProcesses(run.experimentId, []);
        row.orphaned += left.length;
        row.notes.push(`pids ${left.join(', ')} of the run outlived its host's kill by 3 s`);
        for (const pid of left) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone meanwhile
          }
        }
      }

      const result = await awaitResult(run.handle, Date.now() + (trainingSeconds * 3 + 300) * 1000).catch(() => null);
      if (!result) return 60_000; // the row's verdict says how it was lost
      const events = await ledgerEvents(ledger);
      const stepsOfFirst = events.filter((e) => e.pid === trainingPid && e.kind === 'step');
      const lastStepOfFirst = stepsOfFirst[stepsOfFirst.length - 1];
      const laterStart = events.find((e) => e.kind === 'start' && e.pid !== trainingPid);
      const resumed = events.find((e) => e.kind === 'resumed' && e.pid !== trainingPid);

      // The two attempts' training must not overlap: attempt 1 stepped last before attempt 2 started.
      if (lastStepOfFirst && laterStart && lastStepOfFirst.atMs >= laterStart.atMs) {
        row.duplicated++;
        row.notes.push(
          `attempt 1 trained step ${lastStepOfFirst.value} ${seconds(lastStepOfFirst.atMs - laterStart.atMs)} s after attempt 2 started`,
        );
      }
      const { attempts, restore } = await shownRecord(row, run.experimentId);
      const [lost, second] = attempts;
      if (!lost || !second) {
        wrong(row, `the record has ${attempts.length} attempt(s), not 2`);
        return 60_000;
      }
      if (lost.ended !== 'lost') wrong(row, `attempt 1 ended ${lost.ended}, not lost`);
      if (second.host === lost.host) wrong(row, `attempt 2 ran on the killed host ${lost.host}`);
      if (!restore?.restored) wrong(row, `attempt 2 restored nothing: ${restore ? restore.reason : 'no restore'}`);
      if (!resumed || resumed.value === 0)
        wrong(row, `attempt 2 resumed at step ${resumed?.value ?? 'none'}, not from its checkpoint`);

      const reachedStep = lastStepOfFirst?.value ?? 0;
      const resumedStep = resumed?.value ?? 0;
      // Training lost, by the script's own clock: from the step the resume restored to the last step trained.
      const restoredStep = stepsOfFirst.find((e) => e.value === resumedStep);
      const lostMs = lastStepOfFirst && restoredStep ? lastStepOfFirst.atMs - restoredStep.atMs : Number.NaN;
      const endedAt = Date.parse(lost.ended_at ?? '');
      const fence = fenceWaitSeconds(lost.why);
      const timing =
        fence === null
          ? `detection and fence wait ${seconds(endedAt - killedAt)} s`
          : `detection ${seconds(endedAt - fence * 1000 - killedAt)} s, fence wait ${fence.toFixed(1)} s`;
      const firstStep = events.find((e) => e.pid === laterStart?.pid && e.kind === 'step');
      row.notes.push(
        `lost ${seconds(lostMs)} s of training (checkpoint interval ${plan.checkpointSeconds} s, synced every ${DEFAULT_CHECKPOINT_SYNC_MS / 1000} s); ` +
          `${timing} (--fencing-time ${plan.fencingSeconds}), re-placement ${seconds(Date.parse(second.started_at) - endedAt)} s, ` +
          `restore ${restore?.restored ? (restore.seconds ?? 0).toFixed(1) : '-'} s; ` +
          `resumed at step ${resumedStep} of the ${reachedStep} reached`,
      );
      row.notes.push(
        `the record: attempt 1 on ${lost.host} trained ${lost.trained_seconds ?? '?'} s and lost ${lost.lost_seconds ?? '?'} s; ` +
          `attempt 2 on ${second.host} trained ${second.trained_seconds ?? '?'} s` +
          (firstStep ? `; its first step ${seconds(firstStep.atMs - killedAt)} s after the kill` : ''),
      );
      return 60_000;
    },
  },
];
