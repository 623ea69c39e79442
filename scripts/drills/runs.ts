/**
 * What a drill checks for each run it submitted: a terminal state within the deadline, the metric
 * the script printed, one outcome, and no process of the run left once it is decided.
 */
import fs from 'node:fs/promises';
import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import { CatalogReader } from '../../src/catalog/catalog.js';
import type { ExperimentHandle } from '../../src/client/experiments.js';
import { isTerminal, type ExperimentResult, type TerminalStatus } from '../../src/domain/experiment.js';
import { processAlive } from '../../src/shared/processes.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { holdsWithin } from './wait.js';

/** Processes of a run still running this long after its decision count as orphaned. */
const ORPHAN_GRACE_MS = 3_000;

export interface Expectation {
  status: TerminalStatus;
  /** For a completed run: the metric its script printed. */
  metric?: number;
}

export interface TrackedRun {
  label: string;
  experimentId: string;
  handle: ExperimentHandle;
  expect: Expectation;
  /** Files where the run's scripts write their pids (one or more per line). */
  pidFiles: string[];
  /**
   * drill_train.py's ledger of executions. Where there is one, the metric to expect is the one
   * the first execution to finish printed: a later execution prints another, so a finished
   * result that was lost and trained again counts as lost.
   */
  ledger?: string;
}

/** What a run's ledger says: how many executions started and the metrics of those that finished. */
export async function readLedger(file: string): Promise<{ started: number; finished: number[] }> {
  const lines = (await fs.readFile(file, 'utf8').catch(() => '')).split('\n');
  return {
    started: lines.filter((line) => line.startsWith('start ')).length,
    finished: lines.filter((line) => line.startsWith('finished ')).map((line) => Number(line.split(' ')[1])),
  };
}

export interface RunVerdict {
  label: string;
  experimentId: string;
  status: TerminalStatus | null;
  metric: number | null;
  reason: string | null;
  /** Why the run counts as lost, if it does. */
  lost: string | null;
  /** Why the run ended in a state other than the expected one, if it did. */
  wrong: string | null;
  orphans: { pid: number; command: string }[];
  /** Placements the run took (2 when it was re-placed once); null when the workflow did not answer. */
  attempts: number | null;
  /** From the ledger: training executions started and finished; null without a ledger. */
  executions: { started: number; finished: number } | null;
}

/** The result, retrying through outages (the server or orchestrator may be down); null at the deadline. */
export async function awaitResult(handle: ExperimentHandle, deadline: number): Promise<ExperimentResult | null> {
  while (Date.now() < deadline) {
    try {
      const result = await Promise.race([
        handle.result(),
        new Promise<null>((r) => setTimeout(() => r(null), Math.max(0, deadline - Date.now())).unref()),
      ]);
      return result;
    } catch (error) {
      if (error instanceof WorkflowFailedError || error instanceof WorkflowNotFoundError) throw error;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  return null;
}

async function pidsFromFiles(files: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const file of files) {
    const text = await fs.readFile(file, 'utf8').catch(() => '');
    for (const word of text.split(/\s+/)) if (/^\d+$/.test(word)) pids.push(Number(word));
  }
  return pids;
}

async function commandOf(pid: number): Promise<string> {
  const raw = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return raw.replace(/\0/g, ' ').trim().slice(0, 120) || '?';
}

/** Live processes of a run: pids its scripts wrote, and any process with its EXPCTL_EXPERIMENT_ID. */
export async function runProcesses(experimentId: string, pidFiles: string[]): Promise<number[]> {
  const found = new Set((await pidsFromFiles(pidFiles)).filter((pid) => pid !== process.pid && processAlive(pid)));
  const marker = `\0EXPCTL_EXPERIMENT_ID=${experimentId}\0`;
  const entries = await fs.readdir('/proc').catch(() => [] as string[]);
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await fs.readFile(`/proc/${entry}/environ`, 'latin1').catch(() => '');
    if (`\0${environ}`.includes(marker) && processAlive(Number(entry))) found.add(Number(entry));
  }
  return [...found];
}

/** Waits for the run's result, then checks its state, metric and leftovers (killing what is left). */
export async function judgeRun(run: TrackedRun, deadline: number): Promise<RunVerdict> {
  const verdict: RunVerdict = {
    label: run.label,
    experimentId: run.experimentId,
    status: null,
    metric: null,
    reason: null,
    lost: null,
    wrong: null,
    orphans: [],
    attempts: null,
    executions: null,
  };
  let result: ExperimentResult | null = null;
  try {
    result = await awaitResult(run.handle, deadline);
  } catch (error) {
    verdict.lost = `the workflow failed: ${(error as Error).message}`;
  }
  let expected = run.expect.metric;
  if (run.ledger) {
    const ledger = await readLedger(run.ledger);
    verdict.executions = { started: ledger.started, finished: ledger.finished.length };
    if (run.expect.metric !== undefined) expected = ledger.finished[0] ?? Number.NaN;
  }
  if (result) {
    verdict.status = result.status;
    verdict.metric = result.metric;
    verdict.reason = result.reason;
    if (result.status === 'worker_lost') verdict.lost = `worker_lost while its host was alive: ${result.reason}`;
    else if (
      expected !== undefined &&
      result.status === run.expect.status &&
      (result.metric === null || !(Math.abs(result.metric - expected) <= 1e-9))
    ) {
      verdict.lost = Number.isNaN(expected)
        ? `reported metric ${result.metric}, but no training of it finished`
        : `reported metric ${result.metric}, not the ${expected} its first finished training printed`;
    } else if (result.status !== run.expect.status) {
      // A run that should have finished with a metric and did not: its result was lost, whatever the state says.
      if (expected !== undefined)
        verdict.lost = `ended ${result.status} instead of reporting its metric: ${result.reason}`;
      else verdict.wrong = `ended ${result.status}, expected ${run.expect.status}: ${result.reason}`;
    }
  } else if (!verdict.lost) {
    verdict.lost = 'no terminal state within the deadline';
  }
  if (result) {
    verdict.attempts = (await run.handle.query(experimentStateQuery).catch(() => undefined))?.attempts ?? null;
    const cleared = await holdsWithin(
      async () => (await runProcesses(run.experimentId, run.pidFiles)).length === 0,
      ORPHAN_GRACE_MS,
    );
    if (!cleared) {
      for (const pid of await runProcesses(run.experimentId, run.pidFiles)) {
        verdict.orphans.push({ pid, command: await commandOf(pid) });
      }
    }
  }
  // Whatever the verdict, the drill leaves nothing of its runs behind.
  for (const pid of await runProcesses(run.experimentId, run.pidFiles)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  return verdict;
}

/** How many terminal outcomes the operating record holds for each run (1 each when nothing is duplicated). */
export async function recordedOutcomes(catalogPath: string, experimentIds: string[]): Promise<Map<string, number>> {
  const catalog = await CatalogReader.open(catalogPath);
  try {
    const counts = new Map<string, number>();
    for (const id of experimentIds)
      counts.set(id, ((await catalog.get(id))?.events ?? []).filter((event) => isTerminal(event.status)).length);
    return counts;
  } finally {
    await catalog.close();
  }
}

/** The experiments the operating record holds for a tag. */
export async function recordedExperiments(catalogPath: string, tag: string): Promise<string[]> {
  const catalog = await CatalogReader.open(catalogPath);
  try {
    return (await catalog.list({ tag, limit: 100_000 })).map((record) => record.id);
  } finally {
    await catalog.close();
  }
}
