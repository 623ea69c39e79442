import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import { PRIVATE_FILE } from '../security/files.js';
import { processAlive } from '../shared/processes.js';

/**
 * A process named by its pid AND its start time, so a recycled pid is never mistaken for it.
 * Where the OS has no /proc (macOS), startTime is null and liveness is all there is.
 */
export interface ProcessIdentity {
  pid: number;
  startTime: string | null;
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or null. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may itself contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] ?? null;
  } catch {
    return null;
  }
}

export function identityOf(pid: number): ProcessIdentity {
  return { pid, startTime: processStartTime(pid) };
}

/** True while the very process the identity names is running (not a later one with its pid). */
export function isRunning(identity: ProcessIdentity | undefined): boolean {
  if (!identity || !Number.isInteger(identity.pid) || identity.pid <= 0) return false;
  if (!processAlive(identity.pid)) return false;
  if (identity.startTime === null || identity.startTime === undefined) return true;
  return processStartTime(identity.pid) === identity.startTime;
}

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
