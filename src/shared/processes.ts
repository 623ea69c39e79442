import { readFileSync } from 'node:fs';

/**
 * True while a process runs. A zombie (exited, not yet reaped by its new parent) counts as gone,
 * and so does one we may not signal only if it does not exist.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return true; // no /proc (macOS): the signal check is all there is
  }
}

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
