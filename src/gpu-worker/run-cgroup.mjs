// The kill core of a run's cgroup, in plain JavaScript so that both the worker (containment.ts)
// and the supervisor (a plain node process) use the same code. A run's cgroup is one directory
// per hierarchy (cgroup v2: one; v1: memory, pids, freezer); its processes are the union of them.
import fs from 'node:fs/promises';
import path from 'node:path';

/** Every pid in the cgroups `dirs` and their child cgroups (a run may create its own). */
export async function cgroupMembers(dirs) {
  const pids = new Set();
  const visit = async (dir) => {
    const text = await fs.readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    for (const line of text.split('\n')) if (line.trim()) pids.add(Number(line));
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) if (entry.isDirectory()) await visit(path.join(dir, entry.name));
  };
  for (const dir of dirs) await visit(dir);
  return [...pids].filter((pid) => Number.isInteger(pid) && pid > 0);
}

async function write(file, value) {
  try {
    await fs.writeFile(file, value);
    return true;
  } catch {
    return false;
  }
}

async function exists(file) {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}

function signalAll(pids, signal) {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // gone already
    }
  }
}

/** Freezes the cgroup (v2 cgroup.freeze, v1 freezer.state) so nothing forks while it is killed. */
async function setFrozen(cgroup, frozen) {
  if (!cgroup.freezer) return;
  if (cgroup.version === 2) await write(path.join(cgroup.freezer, 'cgroup.freeze'), frozen ? '1' : '0');
  else await write(path.join(cgroup.freezer, 'freezer.state'), frozen ? 'FROZEN' : 'THAWED');
}

/**
 * SIGKILLs every process of the cgroup until none is left (or `timeoutMs` passes); true when empty.
 * v2 uses cgroup.kill where the kernel has it; otherwise (and on v1) the cgroup is frozen, every
 * member is SIGKILLed, and it is thawed so the kills land; repeated until cgroup.procs is empty.
 * `except` (the supervisor, which lives in the cgroup) is spared, and then cgroup.kill is not used.
 */
export async function killCgroup(cgroup, { except = null, timeoutMs = 30_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  const others = async () => (await cgroupMembers(cgroup.dirs)).filter((pid) => pid !== except);
  for (let round = 0; ; round++) {
    const pids = await others();
    if (pids.length === 0) return true;
    if (Date.now() > deadline) return false;
    const killFile = cgroup.version === 2 ? path.join(cgroup.dirs[0], 'cgroup.kill') : null;
    if (except === null && killFile && (await exists(killFile)) && (await write(killFile, '1'))) {
      // the kernel kills every member, including ones forked meanwhile
    } else if (except === null) {
      await setFrozen(cgroup, true);
      signalAll(pids, 'SIGKILL');
      await setFrozen(cgroup, false);
    } else {
      // The supervisor must keep running, so the cgroup is not frozen: repeated rounds catch forks.
      signalAll(pids, 'SIGKILL');
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(200, 10 * (round + 1))));
  }
}

/** Removes the (empty) cgroup directories, children first; false when one could not be removed. */
export async function removeCgroup(cgroup) {
  let ok = true;
  const remove = async (dir) => {
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => null);
    if (entries === null) return;
    for (const entry of entries) if (entry.isDirectory()) await remove(path.join(dir, entry.name));
    await fs.rmdir(dir).catch((error) => {
      if (error.code !== 'ENOENT') ok = false;
    });
  };
  for (const dir of cgroup.dirs) await remove(dir);
  return ok;
}
