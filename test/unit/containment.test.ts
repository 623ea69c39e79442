import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSummaryBlock } from '../../src/domain/metrics.js';
import {
  createRunContainment,
  detectContainment,
  removeWorkerCgroups,
  runContainmentOf,
  runProcessesLeft,
  workerScope,
  type ContainmentSupport,
} from '../../src/gpu-worker/containment.js';
import { reconcileRuns, runFate } from '../../src/gpu-worker/reconcile.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { startRun } from '../../src/gpu-worker/run-process.js';
import { processAlive } from '../../src/shared/processes.js';
import { waitFor } from '../helpers/wait.js';
import { FIXTURES } from '../helpers/stack.js';
import { fileExists } from '../helpers/files.js';

let workDir: string;
let support: ContainmentSupport;

beforeAll(async () => {
  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-contain-'));
  support = await detectContainment(workDir);
});
afterAll(async () => {
  await reconcileRuns(workDir, support);
  expect(await removeWorkerCgroups(support)).toBe(true);
  await removeWorkerCgroups(await detectContainment(workDir, { EXPCTL_CONTAINMENT: 'cgroup-v2' }));
  await fs.rm(workDir, { recursive: true, force: true });
});

/** Live processes whose command line holds `token` (each run below passes a token of its own). */
async function processesWith(token: string): Promise<number[]> {
  const found: number[] = [];
  for (const name of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cmdline = await fs.readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(token) && processAlive(Number(name))) found.push(Number(name));
  }
  return found;
}

/**
 * The supervisor of `experimentId` once it has started up and waits (its CPU time stands still),
 * and the processes it has started by then.
 */
async function waitingSupervisor(experimentId: string): Promise<{ pid: number; children: string }> {
  let last = '';
  let pid = 0;
  await waitFor(async () => {
    [pid = 0] = (await processesWith(experimentId)).filter((found) => found !== process.pid);
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const cpu = stat
      .slice(stat.lastIndexOf(')') + 2)
      .split(' ')
      .slice(11, 13)
      .join(' ');
    const still = pid !== 0 && cpu !== '' && cpu === last;
    last = cpu;
    if (!still) await new Promise((resolve) => setTimeout(resolve, 300));
    return still;
  }, 30_000);
  const children = await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
  return { pid, children: children.trim() };
}

async function start(
  mode: string,
  options: {
    support?: ContainmentSupport;
    env?: Record<string, string>;
    logCapBytes?: number;
    logTailBytes?: number;
    experimentId?: string;
  } = {},
) {
  const token = `expctl-test-${crypto.randomBytes(4).toString('hex')}`;
  const experimentId = options.experimentId ?? `exp-${token}`;
  const log = path.join(workDir, `${experimentId}.log`);
  const escapePidFile = path.join(workDir, `${token}.escape.pid`);
  const env = Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
  const run = await startRun({
    experimentId,
    support: options.support ?? support,
    log,
    cwd: path.join(FIXTURES, 'scripts'),
    command: ['python3', 'escape.py', token],
    env: { ...env, MODE: mode, ESCAPE_PID_FILE: escapePidFile, ...options.env },
    logCapBytes: options.logCapBytes,
    logTailBytes: options.logTailBytes,
  });
  return { run, token, experimentId, log, escapePidFile, ref: { supervisorPid: run.supervisorPid } };
}

/** A supervisor's config (supervisor.mjs) for a run without containment that waits for its variables on stdin. */
function waitingSupervisorConfig(experimentId: string, exitFile: string) {
  return {
    log: path.join(workDir, `${experimentId}.log`),
    cwd: path.join(FIXTURES, 'scripts'),
    cgroup: null,
    pidNamespace: false,
    logCapBytes: 1 << 30,
    tailBytes: 1 << 20,
    exitFile,
    childEnvOnStdin: true,
  };
}
describe('cgroup detection on this machine', () => {
  it('picks the cgroup version the mounts offer and prepares a parent per worker', async () => {
    const mounts = await fs.readFile('/proc/self/mounts', 'utf8').catch(() => '');
    const v1 = (controller: string) => new RegExp(`^\\S+ \\S+ cgroup \\S*\\b${controller}\\b`, 'm').test(mounts);
    const unified = /^\S+ (\S+) cgroup2 /m.exec(mounts)?.[1];
    const v2Memory = unified
      ? (await fs.readFile(path.join(unified, 'cgroup.controllers'), 'utf8').catch(() => '')).includes('memory')
      : false;
    console.log(`containment here: ${JSON.stringify(support)}`);
    if (process.getuid?.() !== 0) return; // creating cgroups needs root or a delegated tree
    if (v2Memory) expect(support.cgroups?.version).toBe(2);
    else if (v1('memory') && v1('freezer')) {
      expect(support.cgroups?.version).toBe(1);
      for (const dir of [support.cgroups!.parents.memory, support.cgroups!.parents.freezer]) {
        expect(dir).toContain(path.join('expctl', workerScope(workDir)));
        expect((await fs.stat(dir!)).isDirectory()).toBe(true);
      }
    } else if (unified) expect(support.cgroups?.version).toBe(2);
    else expect(support.cgroups).toBeNull();
    expect(workerScope('/a')).not.toBe(workerScope('/b'));
  });
});

describe('the cgroup v2 path', () => {
  it('kills an escaped grandchild through a v2 cgroup (here: the v2 tree, where one is mounted)', async (test) => {
    const v2 = await detectContainment(workDir, { EXPCTL_CONTAINMENT: 'cgroup-v2' });
    if (v2.cgroups?.version !== 2) return test.skip();
    const { run, token, escapePidFile, ref } = await start('escape', { support: v2 });
    expect(await run.exited).toMatchObject({ reported: true, exitCode: 0 });
    expect(run.containment.kind).toBe('cgroup-v2');
    const escaped = Number(await fs.readFile(escapePidFile, 'utf8'));
    expect(await runProcessesLeft(run.containment, ref)).toContain(escaped);
    await run.finish();
    expect(processAlive(escaped)).toBe(false);
    expect(await processesWith(token)).toEqual([]);
    await expect(fs.access(run.containment.cgroup!.dirs[0]!)).rejects.toThrow();
  });

  it('refuses an unknown pinned containment', async () => {
    await expect(detectContainment(workDir, { EXPCTL_CONTAINMENT: 'jail' })).rejects.toThrow(
      /EXPCTL_CONTAINMENT=jail: expected one of cgroup-v2/,
    );
  });
});

describe('a contained run', () => {
  it('leaves nothing when a grandchild escapes with setsid and a double fork', async () => {
    const { run, token, escapePidFile, ref } = await start('escape');
    const exit = await run.exited;
    expect(exit).toEqual({ reported: true, exitCode: 0, signal: null });
    const escaped = Number(await fs.readFile(escapePidFile, 'utf8'));
    if (support.cgroups) {
      expect(processAlive(escaped)).toBe(true);
      expect(await runProcessesLeft(run.containment, ref)).toContain(escaped);
    }
    const evidence = await run.finish();
    expect(await runProcessesLeft(run.containment, ref)).toEqual([]);
    if (run.containment.kind !== 'process-group') {
      expect(processAlive(escaped)).toBe(false);
      expect(await processesWith(token)).toEqual([]);
    }
    if (run.containment.cgroup) {
      for (const dir of run.containment.cgroup.dirs) await expect(fs.access(dir)).rejects.toThrow();
      expect(evidence.peakMemoryBytes).toBeGreaterThan(0);
      expect(evidence.oomKills).toBe(0);
    }
    console.log(
      `escape run: containment ${run.containment.kind}, peak ${evidence.peakMemoryBytes} bytes, oom kills ${evidence.oomKills}`,
    );
  });

  it('notices a supervisor killed from inside the run and still kills the run', async () => {
    const pidFile = path.join(workDir, 'kill-parent.pid');
    const { run, ref } = await start('kill-parent', { env: { PID_FILE: pidFile } });
    const exit = await run.exited;
    expect(exit.reported).toBe(false);
    expect(exit.signal).toBe('SIGKILL');
    const training = Number(await fs.readFile(pidFile, 'utf8'));
    await run.finish();
    expect(processAlive(training)).toBe(false);
    expect(await runProcessesLeft(run.containment, ref)).toEqual([]);
  });

  it('stop() ends a hanging run with an escaped grandchild, and nothing is left', async () => {
    const { run, token, escapePidFile, ref } = await start('hang-escape');
    await waitFor(async () => fileExists(escapePidFile), 20_000);
    await run.stop(500);
    await run.exited;
    await run.finish();
    expect(await runProcessesLeft(run.containment, ref)).toEqual([]);
    if (run.containment.kind !== 'process-group') expect(await processesWith(token)).toEqual([]);
  });

  it("a stop's late SIGKILL never reaches a later run of the same experiment in the same containment", async () => {
    const experimentId = `exp-reused-${crypto.randomBytes(4).toString('hex')}`;
    const exists = (file: string) => async () => fileExists(file);
    const first = await start('hang-escape', { experimentId });
    await waitFor(exists(first.escapePidFile), 20_000);
    const killAfterMs = 1500;
    const stoppedAt = Date.now();
    await first.run.stop(killAfterMs);
    await first.run.exited;
    await first.run.finish();

    // The next attempt starts in the same cgroup (or process-group fallback) before the first's kill is due.
    const second = await start('hang-escape', { experimentId });
    await waitFor(exists(second.escapePidFile), 20_000);
    await waitFor(async () => Date.now() - stoppedAt > killAfterMs + 1000, 10_000);
    expect(processAlive(second.run.supervisorPid)).toBe(true);
    expect((await runProcessesLeft(second.run.containment, second.ref)).length).toBeGreaterThan(0);
    await second.run.stop(500);
    await second.run.exited;
    await second.run.finish();
    expect(await runProcessesLeft(second.run.containment, second.ref)).toEqual([]);
  });

  it('without cgroups, a PID namespace still kills an escaped grandchild', async () => {
    if (!support.pidNamespace) return;
    const { run, token, ref } = await start('escape', { support: { cgroups: null, pidNamespace: true } });
    const exit = await run.exited;
    expect(exit).toMatchObject({ reported: true, exitCode: 0 });
    expect(run.containment.kind).toBe('pid-namespace');
    await run.finish();
    expect(await runProcessesLeft(run.containment, ref)).toEqual([]);
    await waitFor(async () => (await processesWith(token)).length === 0, 10_000);
  });

  it('caps the raw log and keeps its end, the metric block included', async () => {
    const { run, log } = await start('bigline', {
      env: { BIGLINE_MB: '3', VAL_BPB: '0.75' },
      logCapBytes: 1 << 20,
      logTailBytes: 64 * 1024,
    });
    expect(await run.exited).toMatchObject({ reported: true, exitCode: 0 });
    await run.finish();
    const text = await fs.readFile(log, 'utf8');
    expect(text.length).toBeLessThan((1 << 20) + 2 * 64 * 1024);
    expect(text).toContain('expctl: the log reached its cap of 1048576 bytes');
    expect(text).toMatch(/expctl: \d+ bytes of output omitted; the last 65536 bytes follow/);
    expect(parseSummaryBlock(text)?.val_bpb).toBe(0.75);
    await expect(fs.access(`${log}.tail.0`)).rejects.toThrow();
  });
});

/**
 * A supervisor forked as a worker forks it, over a run whose grandchild escapes and hangs: returns
 * once the escapee wrote its pid. `settings` are the supervisor's grace, fencing and kill times.
 */
async function hangingRun(prefix: string, settings: Record<string, number>) {
  const experimentId = `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
  const containment = await createRunContainment(support, experimentId);
  const escapePidFile = path.join(workDir, `${experimentId}.escape.pid`);
  const attachedFile = path.join(workDir, `${experimentId}.attached`);
  const exitFile = path.join(workDir, `${experimentId}.exit.json`);
  await fs.writeFile(attachedFile, '');
  const log = path.join(workDir, `${experimentId}.log`);
  const config = {
    log,
    cwd: path.join(FIXTURES, 'scripts'),
    cgroup: containment.cgroup,
    pidNamespace: containment.kind === 'pid-namespace',
    logCapBytes: 1 << 30,
    tailBytes: 1 << 20,
    attachedFile,
    exitFile,
    ...settings,
  };
  const supervisor = fork(
    fileURLToPath(new URL('../../src/gpu-worker/supervisor.mjs', import.meta.url)),
    [JSON.stringify(config), '--', 'python3', 'escape.py'],
    {
      env: { ...process.env, MODE: 'hang-escape', ESCAPE_PID_FILE: escapePidFile },
      detached: true,
      serialization: 'json',
    },
  );
  const ended = { at: 0 };
  const gone = new Promise((resolve) => supervisor.on('exit', resolve)).then(() => (ended.at = Date.now()));
  await waitFor(async () => fileExists(escapePidFile), 20_000);
  const escaped = Number(await fs.readFile(escapePidFile, 'utf8'));
  return { containment, supervisor, attachedFile, exitFile, log, escaped, gone, ended };
}

describe('runs whose worker is gone', () => {
  it('the supervisor keeps its run while a worker is attached, and kills it after the orphan grace', async () => {
    const {
      containment,
      supervisor,
      attachedFile,
      exitFile,
      log: logFile,
      escaped,
      gone,
      ended,
    } = await hangingRun('exp-disconnect', { orphanGraceMs: 3000, killAfterMs: 1000 });
    supervisor.disconnect();
    // A worker keeps the attached file fresh for 5 s: the run lives on past the 3 s grace.
    const disconnectedAt = Date.now();
    while (Date.now() - disconnectedAt < 5000) {
      const now = new Date();
      await fs.utimes(attachedFile, now, now);
      expect(ended.at).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(processAlive(supervisor.pid!)).toBe(true);
    const releasedAt = Date.now();
    await gone;
    expect(ended.at - releasedAt).toBeGreaterThanOrEqual(2500);
    if (containment.kind !== 'process-group') expect(processAlive(escaped)).toBe(false);
    expect(await runProcessesLeft(containment, { supervisorPid: supervisor.pid! })).toEqual([]);
    const log = await fs.readFile(logFile, 'utf8');
    expect(log).toContain('the worker supervising this run is gone; the run goes on while a worker attaches to it');
    expect(log).toMatch(/orphaned: no worker for \d+s; killing every process of the run/);
    expect(JSON.parse(await fs.readFile(exitFile, 'utf8'))).toMatchObject({
      exitCode: null,
      signal: 'SIGKILL',
      orphaned: expect.stringMatching(/^orphaned: no worker for \d+s$/),
    });
  });

  it('fencing: the supervisor stops its run once the lease went unconfirmed for the fencing time, its worker still connected', async () => {
    const {
      containment,
      supervisor,
      attachedFile,
      exitFile,
      log: logFile,
      escaped,
      gone,
      ended,
    } = await hangingRun('exp-fence', { orphanGraceMs: 60_000, fencingMs: 3000, killAfterMs: 1000 });
    // Confirmations every 500 ms for 5 s, each dated when the lease was asked about: the run lives past its 3 s fence.
    const confirmingFrom = Date.now();
    let lastConfirmed = 0;
    while (Date.now() - confirmingFrom < 5000) {
      const askedAt = new Date(Date.now() - 200);
      await fs.utimes(attachedFile, askedAt, askedAt);
      lastConfirmed = askedAt.getTime();
      expect(ended.at).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(processAlive(supervisor.pid!)).toBe(true);
    // The worker stays connected but confirms nothing more (frozen, cut off, or its lease revoked).
    await gone;
    expect(ended.at - lastConfirmed).toBeGreaterThanOrEqual(3000);
    // The fence (3 s), the supervisor's check (0.5 s), its kill grace (1 s), and a loaded machine's slack.
    expect(ended.at - lastConfirmed).toBeLessThan(3000 + 500 + 1000 + 5000);
    if (containment.kind !== 'process-group') expect(processAlive(escaped)).toBe(false);
    expect(await runProcessesLeft(containment, { supervisorPid: supervisor.pid! })).toEqual([]);
    const log = await fs.readFile(logFile, 'utf8');
    expect(log).not.toContain('the worker supervising this run is gone');
    expect(log).toMatch(/fenced: no lease confirmation for \d+s; killing every process of the run/);
    expect(JSON.parse(await fs.readFile(exitFile, 'utf8'))).toMatchObject({
      exitCode: null,
      signal: 'SIGKILL',
      orphaned: expect.stringMatching(/^fenced: no lease confirmation for \d+s$/),
    });
  });

  it('a supervisor whose worker goes away while it starts never starts the training, and records why', async () => {
    const experimentId = `exp-early-${crypto.randomBytes(4).toString('hex')}`;
    const escapePidFile = path.join(workDir, `${experimentId}.escape.pid`);
    const exitFile = path.join(workDir, `${experimentId}.exit.json`);
    const config = { ...waitingSupervisorConfig(experimentId, exitFile), orphanGraceMs: 60_000 };
    const supervisor = fork(
      fileURLToPath(new URL('../../src/gpu-worker/supervisor.mjs', import.meta.url)),
      [JSON.stringify(config), '--', 'python3', 'escape.py'],
      { detached: true, serialization: 'json', stdio: ['pipe', 'ignore', 'ignore', 'ipc'] },
    );
    const exited = new Promise((resolve) => supervisor.on('exit', resolve));
    // The worker goes away while the supervisor still waits for its variables...
    await new Promise((resolve) => supervisor.on('spawn', resolve));
    supervisor.disconnect();
    // ...which arrive once the supervisor has seen its channel close (its fd 3 is no longer the channel).
    await waitFor(
      async () => !(await fs.readlink(`/proc/${supervisor.pid}/fd/3`).catch(() => '')).startsWith('socket:'),
      20_000,
    );
    supervisor.stdin!.end(JSON.stringify({ env: { MODE: 'hang-escape', ESCAPE_PID_FILE: escapePidFile }, scrub: [] }));
    expect(await exited).toBe(0);
    expect(await fs.readFile(config.log, 'utf8')).toContain(
      'the worker went away before the training started; it was not started',
    );
    expect(JSON.parse(await fs.readFile(exitFile, 'utf8'))).toMatchObject({
      exitCode: null,
      orphaned: 'orphaned: the worker went away before the training started',
    });
    await expect(fs.access(escapePidFile)).rejects.toThrow();
  });

  it('a supervisor whose stdin closes without the variables never starts the training, and records why', async () => {
    const experimentId = `exp-nostdin-${crypto.randomBytes(4).toString('hex')}`;
    const pidFile = path.join(workDir, `${experimentId}.pid`);
    const exitFile = path.join(workDir, `${experimentId}.exit.json`);
    const config = waitingSupervisorConfig(experimentId, exitFile);
    const supervisor = fork(
      fileURLToPath(new URL('../../src/gpu-worker/supervisor.mjs', import.meta.url)),
      [JSON.stringify(config), '--', 'python3', 'escape.py'],
      {
        env: { ...process.env, PID_FILE: pidFile },
        detached: true,
        serialization: 'json',
        stdio: ['pipe', 'ignore', 'ignore', 'ipc'],
      },
    );
    const exited = new Promise((resolve) => supervisor.on('exit', resolve));
    // Still connected, but stdin closes empty: the worker was cut off before it handed the variables over.
    await new Promise((resolve) => supervisor.on('spawn', resolve));
    supervisor.stdin!.end();
    expect(await exited).toBe(0);
    expect(await fs.readFile(config.log, 'utf8')).toContain(
      'the worker went away before the training started; it was not started',
    );
    expect(JSON.parse(await fs.readFile(exitFile, 'utf8'))).toMatchObject({ exitCode: null });
    await expect(fs.access(pidFile)).rejects.toThrow();
  });

  it('startRun asks its last check while the supervisor starts, and starts the training only after it', async () => {
    const token = `expctl-test-${crypto.randomBytes(4).toString('hex')}`;
    const experimentId = `exp-${token}`;
    const log = path.join(workDir, `${experimentId}.log`);
    const pidFile = path.join(workDir, `${token}.pid`);
    const escapePidFile = path.join(workDir, `${token}.escape.pid`);
    let checked = false;
    const run = await startRun({
      experimentId,
      support,
      log,
      cwd: path.join(FIXTURES, 'scripts'),
      command: ['python3', 'escape.py', token],
      env: { PATH: process.env.PATH!, MODE: 'escape', PID_FILE: pidFile, ESCAPE_PID_FILE: escapePidFile },
      beforeTraining: async () => {
        // The supervisor is up and waits: no training process before the answer.
        expect((await waitingSupervisor(experimentId)).children).toBe('');
        expect(await fileExists(pidFile)).toBe(false);
        checked = true;
      },
    });
    expect(checked).toBe(true);
    expect(await run.exited).toMatchObject({ reported: true, exitCode: 0 });
    expect(await fileExists(pidFile)).toBe(true);
    await waitFor(async () => fileExists(escapePidFile), 20_000);
    await run.finish();
    expect(await processesWith(token)).toEqual([]);
  });

  it('a failed last check kills the waiting supervisor: the training never starts, the cgroup is removed', async () => {
    const token = `expctl-test-${crypto.randomBytes(4).toString('hex')}`;
    const experimentId = `exp-${token}`;
    const log = path.join(workDir, `${experimentId}.log`);
    const pidFile = path.join(workDir, `${token}.pid`);
    let supervisorPid: number | undefined;
    await expect(
      startRun({
        experimentId,
        support,
        log,
        cwd: path.join(FIXTURES, 'scripts'),
        command: ['python3', 'escape.py', token],
        env: { PATH: process.env.PATH!, MODE: 'escape', PID_FILE: pidFile },
        beforeTraining: async () => {
          // Refused once the supervisor is up and waiting for its variables.
          const waiting = await waitingSupervisor(experimentId);
          expect(waiting.children).toBe('');
          supervisorPid = waiting.pid;
          throw new Error('the lease is gone');
        },
      }),
    ).rejects.toThrow('the lease is gone');
    expect(supervisorPid).toBeDefined();
    expect(processAlive(supervisorPid!)).toBe(false);
    expect(await fileExists(pidFile)).toBe(false);
    // It had not even opened the run's log.
    expect(await fileExists(log)).toBe(false);
    for (const dir of runContainmentOf(support, experimentId).cgroup?.dirs ?? [])
      await expect(fs.access(dir)).rejects.toThrow();
  });

  it('a restarted worker keeps a run whose supervisor lives, and kills what a dead supervisor left', async () => {
    const { run, escapePidFile, ref, experimentId } = await start('hang-escape');
    await waitFor(async () => fileExists(escapePidFile), 20_000);
    await fs.mkdir(path.join(workDir, 'runs', experimentId), { recursive: true });
    await fs.writeFile(path.join(workDir, 'runs', experimentId, 'supervisor.pid'), String(run.supervisorPid));
    const escaped = Number(await fs.readFile(escapePidFile, 'utf8'));

    expect(await reconcileRuns(workDir, support)).toEqual({
      kept: [{ experimentId, pid: run.supervisorPid }],
      stopped: [],
      forgotten: [],
    });
    expect(processAlive(run.supervisorPid)).toBe(true);
    expect(processAlive(escaped)).toBe(true);

    // The supervisor dies (killed with the machine's worker, say) and leaves its run behind.
    process.kill(run.supervisorPid, 'SIGKILL');
    expect(await run.exited).toMatchObject({ reported: false });
    expect(await reconcileRuns(workDir, support)).toEqual({
      kept: [],
      stopped: [{ experimentId, pid: run.supervisorPid }],
      forgotten: [],
    });
    if (run.containment.kind !== 'process-group') await waitFor(async () => !processAlive(escaped), 10_000);
    expect(await runProcessesLeft(run.containment, ref)).toEqual([]);
    for (const dir of run.containment.cgroup?.dirs ?? []) await expect(fs.access(dir)).rejects.toThrow();
  });

  it('a restarted worker forgets a run whose experiment closed: its processes killed, its cgroup removed', async () => {
    const { run, escapePidFile, ref, experimentId } = await start('hang-escape');
    await waitFor(async () => fileExists(escapePidFile), 20_000);
    const files = runFiles(workDir, experimentId);
    await fs.mkdir(files.dir, { recursive: true });
    await fs.writeFile(files.pidFile, String(run.supervisorPid));
    const escaped = Number(await fs.readFile(escapePidFile, 'utf8'));
    const asked: string[] = [];
    const closed = async (id: string) => {
      asked.push(id);
      return false;
    };

    expect(await reconcileRuns(workDir, support, closed)).toEqual({
      kept: [],
      stopped: [],
      forgotten: [{ experimentId, pid: run.supervisorPid, why: 'its experiment is closed' }],
    });
    expect(asked).toEqual([experimentId]);
    await run.exited;
    expect(processAlive(run.supervisorPid)).toBe(false);
    if (run.containment.kind !== 'process-group') await waitFor(async () => !processAlive(escaped), 10_000);
    expect(await runProcessesLeft(run.containment, ref)).toEqual([]);
    for (const dir of run.containment.cgroup?.dirs ?? []) await expect(fs.access(dir)).rejects.toThrow();
    // Forgotten for good: a later start does not look at it again.
    expect(await reconcileRuns(workDir, support, closed)).toEqual({ kept: [], stopped: [], forgotten: [] });
    expect(asked).toEqual([experimentId]);
  });
});

describe('runFate: what a starting worker does with a run it finds', () => {
  const orphaned = { orphaned: 'orphaned: no worker for 61s' };
  it.each([
    [
      'live supervisor, experiment open',
      { supervisorAlive: true, exit: undefined, experimentOpen: true },
      { fate: 'keep' },
    ],
    [
      'live supervisor, server unreachable',
      { supervisorAlive: true, exit: undefined, experimentOpen: undefined },
      { fate: 'keep' },
    ],
    [
      'live supervisor, experiment closed',
      { supervisorAlive: true, exit: undefined, experimentOpen: false },
      { fate: 'forget', why: 'its experiment is closed' },
    ],
    [
      'finished unwatched, experiment open',
      { supervisorAlive: false, exit: {}, experimentOpen: true },
      { fate: 'keep' },
    ],
    [
      'finished unwatched, server unreachable',
      { supervisorAlive: false, exit: {}, experimentOpen: undefined },
      { fate: 'keep' },
    ],
    [
      'finished unwatched, experiment closed',
      { supervisorAlive: false, exit: {}, experimentOpen: false },
      { fate: 'forget', why: 'its experiment is closed' },
    ],
    [
      'killed as an orphan, experiment open',
      { supervisorAlive: false, exit: orphaned, experimentOpen: true },
      { fate: 'forget', why: 'its supervisor ended it (orphaned: no worker for 61s)' },
    ],
    [
      'killed as an orphan, server unreachable',
      { supervisorAlive: false, exit: orphaned, experimentOpen: undefined },
      { fate: 'forget', why: 'its supervisor ended it (orphaned: no worker for 61s)' },
    ],
    [
      'dead supervisor, no exit recorded',
      { supervisorAlive: false, exit: undefined, experimentOpen: undefined },
      { fate: 'stop' },
    ],
  ] as const)('%s', (_, run, fate) => {
    expect(runFate(run)).toEqual(fate);
  });
});
