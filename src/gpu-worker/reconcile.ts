import fs from 'node:fs/promises';
import path from 'node:path';
import { processAlive } from '../shared/processes.js';
import {
  detectContainment,
  existingRunCgroups,
  killRun,
  removeRunContainment,
  runContainmentOf,
  type ContainmentSupport,
} from './containment.js';

async function isSupervisor(pid: number): Promise<boolean> {
  try {
    return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('supervisor.mjs');
  } catch {
    // No /proc (macOS): trust the pid file, which only a live run keeps.
    return processAlive(pid);
  }
}

/**
 * At worker start: training runs left by an earlier worker of this work directory are killed
 * (their experiment already saw the worker as lost), every process of each run (its cgroup, or its
 * supervisor's process group), so nothing runs unobserved; then run cgroups are removed.
 */
export async function reconcileOrphans(
  workDir: string,
  support?: ContainmentSupport,
): Promise<{ experimentId: string; pid: number }[]> {
  const containment = support ?? (await detectContainment(workDir));
  const runs = path.join(workDir, 'runs');
  const found: { experimentId: string; pid: number }[] = [];
  const entries = await fs.readdir(runs).catch(() => [] as string[]);
  for (const experimentId of entries) {
    const pidFile = path.join(runs, experimentId, 'supervisor.pid');
    const pid = Number(await fs.readFile(pidFile, 'utf8').catch(() => ''));
    if (!Number.isInteger(pid) || pid <= 0) continue;
    if (processAlive(pid) && (await isSupervisor(pid))) {
      const run = runContainmentOf(containment, experimentId);
      // The supervisor's group, then (with a cgroup) everything else the run started.
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
      await killRun(run, { supervisorPid: pid });
      found.push({ experimentId, pid });
      await fs.appendFile(path.join(runs, experimentId, 'train.log'), '\nexpctl: a restarted worker found this run orphaned and killed it\n');
    }
    await fs.rm(pidFile, { force: true });
  }
  await removeStaleRunCgroups(containment, new Set());
  return found;
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
