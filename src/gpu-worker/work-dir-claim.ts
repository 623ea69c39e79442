import fs from 'node:fs/promises';
import path from 'node:path';
import { processAlive } from '../shared/processes.js';
import { PRIVATE_FILE } from '../security/files.js';

/** Who holds a worker directory: written by the worker that runs on it, removed when it stops. */
interface Holder {
  pid: number;
  host: string;
  startedAt: string;
}

/** Another live worker runs on this directory: this one must not reconcile, register or kill anything. */
export class WorkDirHeldError extends Error {}

const CLAIM_FILE = 'worker.pid';

async function readHolder(file: string): Promise<Holder | null> {
  try {
    const holder = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<Holder>;
    return typeof holder.pid === 'number' ? (holder as Holder) : null;
  } catch {
    return null; // gone meanwhile, or half written by a worker that died: not a live holder
  }
}

/**
 * Claims the worker directory for this process, first thing: a second `expctl worker` started on
 * the same directory (the default one, `--host` the same or not) would otherwise reconcile the
 * first one's runs, register the host anew (revoking the first one's leases) and train in its
 * place. A claim left by a worker that died is taken over. Returns the release.
 */
export async function claimWorkDir(workDir: string, host: string): Promise<() => Promise<void>> {
  const file = path.join(workDir, CLAIM_FILE);
  const mine: Holder = { pid: process.pid, host, startedAt: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      await fs.writeFile(file, JSON.stringify(mine), { ...PRIVATE_FILE, flag: 'wx' });
      return async () => {
        if ((await readHolder(file))?.pid === process.pid) await fs.rm(file, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw error;
    }
    const holder = await readHolder(file);
    // This process's own claim is a worker it created and lost track of (tests create several).
    if (holder && holder.pid !== process.pid && processAlive(holder.pid))
      throw new WorkDirHeldError(
        `refused: the worker directory ${workDir} is held by a running expctl worker for host ${holder.host} ` +
          `(pid ${holder.pid}, since ${holder.startedAt}); this worker touched nothing. Stop that one first, ` +
          `or start this one with its own --host and --work-dir (if pid ${holder.pid} is not an expctl worker, remove ${file})`,
      );
    await fs.rm(file, { force: true });
  }
}
