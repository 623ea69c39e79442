import fs from 'node:fs/promises';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { processAlive } from '../shared/processes.js';
import { runFiles } from './run-files.js';
import {
  detectContainment,
  existingRunCgroups,
  killRun,
  removeRunContainment,
  runContainmentOf,
  type ContainmentSupport,
} from './containment.js';
import { PRIVATE_FILE } from '../security/files.js';
import { readExitFile } from './run-process.js';

export async function isSupervisor(pid: number): Promise<boolean> {
  try {
    return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('supervisor.mjs');
  } catch {
    // No /proc (macOS): trust the pid file, which only a live run keeps.
    return processAlive(pid);
  }
}

/**
 * Whether an experiment's workflow is still open (it may still re-attach to its run): false once it
 * has closed (or is unknown to the server), undefined when the server cannot say now.
 */
export type ExperimentOpen = (experimentId: string) => Promise<boolean | undefined>;

/**
 * Keeps a kept run going for its supervisor: touches its attached file, where the worker can ask
 * the pool only once the pool confirms the run's lease (see kept-runs.ts leaseConfirmer).
 */
export type AttachRun = (experimentId: string) => Promise<void>;

/** What a starting worker found in its work directory. */
export interface ReconcileResult {
  /** Runs with a live supervisor, or that finished unwatched without an outcome: kept for awaitTraining to adopt. */
  kept: { experimentId: string; pid: number }[];
  /** Leftovers of runs whose supervisor is dead and whose result needs nobody: killed. */
  stopped: { experimentId: string; pid: number }[];
  /** Runs that ended (their experiment closed, or their supervisor killed them as orphans): killed, cgroup removed. */
  forgotten: { experimentId: string; pid: number; why: string }[];
}

/** What a starting worker does with a run it finds: keep it for its experiment, forget it (and why), or stop it. */
export type RunFate = { fate: 'keep' } | { fate: 'forget'; why: string } | { fate: 'stop' };

/**
 * The rule (pure): a run whose experiment has closed is forgotten, whatever its supervisor does; a
 * run whose supervisor killed it for want of a worker (the orphan grace passed) is forgotten too.
 * A live supervisor, or an exit recorded without an outcome (a result to adopt), is kept; anything
 * else is stopped.
 */
export function runFate(run: {
  supervisorAlive: boolean;
  /** The supervisor's exit file, when there is one with the run's record and no outcome. */
  exit: { orphaned?: string } | undefined;
  experimentOpen: boolean | undefined;
}): RunFate {
  if (run.experimentOpen === false) return { fate: 'forget', why: 'its experiment is closed' };
  if (run.supervisorAlive) return { fate: 'keep' };
  if (run.exit?.orphaned) return { fate: 'forget', why: `its supervisor ended it (${run.exit.orphaned})` };
  return run.exit ? { fate: 'keep' } : { fate: 'stop' };
}

/**
 * At worker start: a run whose supervisor still lives (its worker was restarted) is kept, and its
 * attached file touched, so the supervisor keeps it going until awaitTraining adopts it; so is a
 * run that ended while no worker watched (its exit recorded, its outcome not yet computed). Runs
 * that ended (see runFate) are forgotten: what is left of them is killed and their cgroups removed,
 * and a later start does not look at them again. Every other run's leftovers are killed (its
 * cgroup, or its supervisor's process group), so nothing runs unobserved; then the cgroups of runs
 * not kept are removed.
 */
export async function reconcileRuns(
  workDir: string,
  support?: ContainmentSupport,
  experimentOpen: ExperimentOpen = async () => undefined,
  attach: AttachRun = (experimentId) => touchAttached(runFiles(workDir, experimentId).attached),
): Promise<ReconcileResult> {
  const containment = support ?? (await detectContainment(workDir));
  const runs = path.join(workDir, 'runs');
  const result: ReconcileResult = { kept: [], stopped: [], forgotten: [] };
  // A server that cannot answer is asked once, not once per run: the worker's start must stay quick.
  let unanswered = false;
  const askOpen = async (experimentId: string) => {
    if (unanswered) return undefined;
    const open = await experimentOpen(experimentId);
    if (open === undefined) unanswered = true;
    return open;
  };
  const entries = await fs.readdir(runs).catch(() => [] as string[]);
  for (const experimentId of entries) {
    const files = runFiles(workDir, experimentId);
    const exists = (file: string) =>
      fs.access(file).then(
        () => true,
        () => false,
      );
    // A finished run whose worktree removal (deferred past its result) a stopped worker never did.
    if ((await exists(files.outcome)) && (await exists(files.tree)))
      await fs.rm(files.tree, { recursive: true, force: true });
    const pid = Number(await fs.readFile(files.pidFile, 'utf8').catch(() => ''));
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const supervisorAlive = processAlive(pid) && (await isSupervisor(pid));
    const exit =
      (await exists(files.record)) && !(await exists(files.outcome))
        ? await readExitFile(files.exit).catch(() => undefined)
        : undefined;
    const fate = runFate({
      supervisorAlive,
      exit,
      experimentOpen: supervisorAlive || exit ? await askOpen(experimentId) : undefined,
    });
    if (fate.fate === 'keep') {
      if (supervisorAlive) await attach(experimentId);
      result.kept.push({ experimentId, pid });
      continue;
    }
    await forgetRun(workDir, containment, experimentId, pid);
    if (fate.fate === 'forget') result.forgotten.push({ experimentId, pid, why: fate.why });
    else result.stopped.push({ experimentId, pid });
  }
  await removeStaleRunCgroups(containment, new Set(result.kept.map((k) => k.experimentId)));
  return result;
}

/**
 * Kills whatever is left of a run (supervisor included) and removes its cgroup; its pid file goes,
 * so no later start looks at it again. Its log, record and exit stay: `expctl logs` still reads them.
 */
export async function forgetRun(
  workDir: string,
  support: ContainmentSupport,
  experimentId: string,
  supervisorPid: number,
): Promise<void> {
  const files = runFiles(workDir, experimentId);
  const run = runContainmentOf(support, experimentId);
  await killRun(run, { supervisorPid }, { timeoutMs: 10_000 });
  await removeRunContainment(run);
  await fs.rm(files.pidFile, { force: true });
}

/** Asks the server whether an experiment's workflow is open (the workflow ID is the experiment ID). */
export function experimentOpenOn(client: Client, deadlineMs = 5000): ExperimentOpen {
  return async (experimentId) => {
    try {
      const described = await client.withDeadline(Date.now() + deadlineMs, () =>
        client.workflow.getHandle(experimentId).describe(),
      );
      return described.status.name === 'RUNNING';
    } catch (error) {
      return error instanceof WorkflowNotFoundError ? false : undefined;
    }
  };
}

/**
 * Runs kept at start that have ended since: finished by the experiment that adopted them (an
 * outcome is kept), or forgotten because their experiment closed without adopting them. Returns
 * the runs still kept and those forgotten.
 */
export async function settleKeptRuns(
  workDir: string,
  support: ContainmentSupport,
  kept: readonly { experimentId: string; pid: number }[],
  experimentOpen: ExperimentOpen,
  watched: (experimentId: string) => boolean,
): Promise<{ kept: { experimentId: string; pid: number }[]; forgotten: ReconcileResult['forgotten'] }> {
  const still: { experimentId: string; pid: number }[] = [];
  const forgotten: ReconcileResult['forgotten'] = [];
  for (const run of kept) {
    const files = runFiles(workDir, run.experimentId);
    const finished = await fs.access(files.outcome).then(
      () => true,
      () => false,
    );
    if (finished) continue;
    if (watched(run.experimentId) || (await experimentOpen(run.experimentId)) !== false) {
      still.push(run);
      continue;
    }
    await forgetRun(workDir, support, run.experimentId, run.pid);
    forgotten.push({ ...run, why: 'its experiment is closed' });
  }
  return { kept: still, forgotten };
}

/**
 * Tells a run's supervisor that a worker is attached to it (see supervisor.mjs); `at`, when the
 * worker confirmed the run's lease: the time it asked the pool, so the fence counts from a moment
 * the lease surely still stood.
 */
export async function touchAttached(file: string, at: Date = new Date()): Promise<void> {
  await fs.utimes(file, at, at).catch(async () => {
    await fs.writeFile(file, '', PRIVATE_FILE).catch(() => undefined);
    await fs.utimes(file, at, at).catch(() => undefined);
  });
}

/**
 * Kills what is left in, and removes, this worker's run cgroups except those of `keep` (runs this
 * worker still supervises). Returns the experiment ids whose cgroups were removed.
 */
export async function removeStaleRunCgroups(support: ContainmentSupport, keep: Set<string>): Promise<string[]> {
  const removed: string[] = [];
  for (const experimentId of await existingRunCgroups(support)) {
    if (keep.has(experimentId)) continue;
    const run = runContainmentOf(support, experimentId);
    await killRun(run, { supervisorPid: -1 }, { timeoutMs: 10_000 });
    if (await removeRunContainment(run)) removed.push(experimentId);
  }
  return removed;
}
