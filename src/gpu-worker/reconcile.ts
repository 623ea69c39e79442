import fs from 'node:fs/promises';
import path from 'node:path';
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

export async function isSupervisor(pid: number): Promise<boolean> {
  try {
    return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('supervisor.mjs');
  } catch {
    // No /proc (macOS): trust the pid file, which only a live run keeps.
    return processAlive(pid);
  }
}

/** What a starting worker found in its work directory. */
export interface ReconcileResult {
  /** Runs with a live supervisor, or whose exit is recorded without an outcome: kept for awaitTraining to adopt. */
  kept: { experimentId: string; pid: number }[];
  /** Leftovers of runs whose supervisor is dead and whose result needs nobody: killed. */
  stopped: { experimentId: string; pid: number }[];
}

/**
 * At worker start: a run whose supervisor still lives (its worker was restarted) is kept, and its
 * attached file touched, so the supervisor keeps it going until awaitTraining adopts it; so is a
 * run that ended while no worker watched (its exit recorded, its outcome not yet computed). Every
 * other run's leftovers are killed (its cgroup, or its supervisor's process group), so nothing runs
 * unobserved; then the cgroups of runs not kept are removed.
 */
export async function reconcileRuns(workDir: string, support?: ContainmentSupport): Promise<ReconcileResult> {
  const containment = support ?? (await detectContainment(workDir));
  const runs = path.join(workDir, 'runs');
  const result: ReconcileResult = { kept: [], stopped: [] };
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
    if (processAlive(pid) && (await isSupervisor(pid))) {
      await touchAttached(files.attached);
      result.kept.push({ experimentId, pid });
      continue;
    }
    if ((await exists(files.exit)) && (await exists(files.record)) && !(await exists(files.outcome))) {
      result.kept.push({ experimentId, pid });
      continue;
    }
    const run = runContainmentOf(containment, experimentId);
    await killRun(run, { supervisorPid: pid }, { timeoutMs: 10_000 });
    result.stopped.push({ experimentId, pid });
    await fs.rm(files.pidFile, { force: true });
  }
  await removeStaleRunCgroups(containment, new Set(result.kept.map((k) => k.experimentId)));
  return result;
}

/** Tells a run's supervisor that a worker is attached to it (see supervisor.mjs). */
export async function touchAttached(file: string): Promise<void> {
  const now = new Date();
  await fs.utimes(file, now, now).catch(() => fs.writeFile(file, '', PRIVATE_FILE).catch(() => undefined));
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
