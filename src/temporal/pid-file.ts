import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { PRIVATE_FILE } from '../security/files.js';
import { isRunning, type ProcessIdentity } from '../shared/processes.js';

export { identityOf, isRunning, processStartTime, type ProcessIdentity } from '../shared/processes.js';

export function readJsonFile<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/**
 * Creates `file` with `content` only if it does not exist: written beside it, then hard-linked
 * into place, so a reader never sees a half-written file and two writers never both win.
 */
export async function createExclusive(file: string, content: string): Promise<boolean> {
  const temp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(temp, content, PRIVATE_FILE);
  try {
    await fs.link(temp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await fs.rm(temp, { force: true });
  }
}

/** Sends SIGTERM, then SIGKILL after `graceMs`, and resolves once the process is gone. */
export async function stopProcess(identity: ProcessIdentity, graceMs = 10_000): Promise<void> {
  const signal = (name: NodeJS.Signals) => {
    try {
      if (isRunning(identity)) process.kill(identity.pid, name);
    } catch {
      // gone already
    }
  };
  signal('SIGTERM');
  // A stopped (SIGSTOP) process cannot act on SIGTERM until it runs again.
  signal('SIGCONT');
  const deadline = Date.now() + graceMs;
  while (isRunning(identity)) {
    if (Date.now() > deadline) signal('SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
  }
}
