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
