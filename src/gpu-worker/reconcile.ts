import fs from 'node:fs/promises';
import path from 'node:path';
import { processAlive } from '../shared/processes.js';

async function isSupervisor(pid: number): Promise<boolean> {
  try {
    return (await fs.readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('supervisor.mjs');
  } catch {
    // No /proc (macOS): trust the pid file, which only a live run keeps.
    return processAlive(pid);
  }
}

/**
 * At worker start: training process groups left by an earlier worker of this work directory are
 * killed (their experiment already saw the worker as lost), so nothing runs unobserved.
 */
export async function reconcileOrphans(workDir: string): Promise<{ experimentId: string; pid: number }[]> {
  const runs = path.join(workDir, 'runs');
  const found: { experimentId: string; pid: number }[] = [];
  let entries: string[];
  try {
    entries = await fs.readdir(runs);
  } catch {
    return found;
  }
  for (const experimentId of entries) {
    const pidFile = path.join(runs, experimentId, 'supervisor.pid');
    const pid = Number(await fs.readFile(pidFile, 'utf8').catch(() => ''));
    if (!Number.isInteger(pid) || pid <= 0) continue;
    if (processAlive(pid) && (await isSupervisor(pid))) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
      found.push({ experimentId, pid });
      await fs.appendFile(path.join(runs, experimentId, 'train.log'), '\nexpctl: a restarted worker found this run orphaned and killed it\n');
    }
    await fs.rm(pidFile, { force: true });
  }
  return found;
}
