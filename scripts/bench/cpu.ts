/**
 * CPU time of the stack's processes, from /proc: what a run costs the machine, beside what the same
 * job costs bare. A process's figure includes the children it has waited for (a worker's git
 * processes and training supervisors, and through them the jobs).
 */
import fs from 'node:fs/promises';

/** Linux reports /proc times in clock ticks of 1/100 s (USER_HZ) on every supported architecture. */
const TICKS_PER_SECOND = 100;

/** CPU seconds of `pid` (or this process): its own, and that of the children it has waited for. */
async function times(pid: number | 'self'): Promise<{ own: number; children: number } | null> {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  // Fields after the command name (which may hold spaces): utime, stime, cutime, cstime are 14–17.
  const fields = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  return {
    own: (fields[11]! + fields[12]!) / TICKS_PER_SECOND,
    children: (fields[13]! + fields[14]!) / TICKS_PER_SECOND,
  };
}

/** CPU seconds of each named process so far, its waited-for children included; null once it is gone. */
export async function cpuOf(processes: Record<string, number>): Promise<Record<string, number | null>> {
  const entries = await Promise.all(
    Object.entries(processes).map(async ([name, pid]) => {
      const t = await times(pid);
      return [name, t === null ? null : t.own + t.children] as const;
    }),
  );
  return Object.fromEntries(entries);
}

/** CPU seconds of the children this process has waited for (how a bare baseline's jobs are charged). */
export async function childrenCpuSeconds(): Promise<number> {
  return (await times('self'))!.children;
}
