import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { ContainmentKind } from '../domain/experiment.js';
import { processAlive } from '../shared/processes.js';
import { DEFAULT_LOG_CAP_BYTES, DEFAULT_LOG_TAIL_BYTES } from '../domain/limits.js';
import {
  createRunContainment,
  killRun,
  memoryEvidence,
  removeRunContainment,
  signalRun,
  type ContainmentSupport,
  type RunContainment,
  type RunProcessesRef,
} from './containment.js';
import { PRIVATE_FILE } from '../security/files.js';
import { secretForms } from '../domain/redact.js';

const SUPERVISOR = fileURLToPath(new URL('./supervisor.mjs', import.meta.url));

/**
 * How the supervisor ended: `reported` is false when it died before telling how its child exited
 * (neither its message nor its exit file arrived). `timedOut`: the supervisor enforced the kill
 * limit itself; `orphaned`: it killed the run because no worker attached to it.
 */
export interface SupervisorExit {
  reported: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut?: boolean;
  orphaned?: string;
}

/** The files the supervisor keeps in the run directory (see supervisor.mjs). */
export interface SupervisorFiles {
  exit: string;
  started: string;
  attached: string;
}

/** The supervisor's exit file, when it wrote one. */
export async function readExitFile(file: string): Promise<SupervisorExit | undefined> {
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const exit = JSON.parse(text) as Omit<SupervisorExit, 'reported'>;
  return { ...exit, reported: true };
}

export interface StartedRun {
  supervisorPid: number;
  /** Updated once the supervisor says how the run is actually contained. */
  containment: RunContainment;
  exited: Promise<SupervisorExit>;
  /** SIGTERM to every process of the run but the supervisor, SIGKILL after `killAfterMs`. */
  stop(killAfterMs: number): Promise<void>;
  /**
   * Kills whatever is left of the run, waits until no process of it is left, reads the cgroup's
   * memory evidence and removes the cgroup. Call after `exited`.
   */
  finish(): Promise<{ peakMemoryBytes: number | null; oomKills: number | null }>;
}

type SupervisorMessage =
  | { type: 'started'; pid: number; containment: ContainmentKind; pidNamespace: string | null }
  | { type: 'exit'; exitCode: number | null; signal: string | null };

/** Creates the run's containment, then starts its supervisor (detached, its own process group) in it. */
export async function startRun(options: {
  experimentId: string;
  support: ContainmentSupport;
  log: string;
  cwd: string;
  command: string[];
  /**
   * The training process's own variables, on top of the worker's environment: the request's
   * `--env` and secrets, CUDA_VISIBLE_DEVICES, EXPCTL_*. They never enter the supervisor's own
   * environment, its argv or a file: the supervisor reads them from its stdin (a pipe from this
   * process) before it spawns the training process, which alone gets them.
   */
  env: Record<string, string>;
  /**
   * Values the supervisor replaces in the training output before it writes the raw log (sent with
   * `env`, on its stdin: they too stay in memory only).
   */
  secretValues?: readonly string[];
  logCapBytes?: number | undefined;
  logTailBytes?: number | undefined;
  /** Without them the supervisor keeps no exit file and kills an orphaned run after the grace. */
  files?: SupervisorFiles;
  orphanGraceMs?: number | undefined;
  /** Stop the run once the attached file is this much older than now (the worker's last lease confirmation). */
  fencingMs?: number | undefined;
  /** The kill limit as an epoch time, enforced by the supervisor too. */
  deadlineMs?: number | undefined;
  killAfterMs?: number | undefined;
  /**
   * The last check before the training process may start (the lease still held). The supervisor
   * starts meanwhile, so its start-up overlaps the check, but it starts nothing before it has its
   * stdin, which it gets only once this resolves; when this throws, the supervisor is killed and the error
   * thrown on.
   */
  beforeTraining?: () => Promise<void>;
}): Promise<StartedRun> {
  const planned = await createRunContainment(options.support, options.experimentId);
  if (options.files) {
    for (const file of [options.files.exit, options.files.started]) await fs.rm(file, { force: true });
    await fs.writeFile(options.files.attached, '', PRIVATE_FILE);
  }
  const config = {
    log: options.log,
    cwd: options.cwd,
    cgroup: planned.cgroup,
    pidNamespace: planned.kind === 'pid-namespace',
    logCapBytes: options.logCapBytes ?? DEFAULT_LOG_CAP_BYTES,
    tailBytes: options.logTailBytes ?? DEFAULT_LOG_TAIL_BYTES,
    exitFile: options.files?.exit,
    startedFile: options.files?.started,
    attachedFile: options.files?.attached,
    orphanGraceMs: options.orphanGraceMs,
    fencingMs: options.fencingMs,
    deadlineMs: options.deadlineMs,
    killAfterMs: options.killAfterMs,
    childEnvOnStdin: true,
  };
  const supervisor = execa(process.execPath, [SUPERVISOR, JSON.stringify(config), '--', ...options.command], {
    // The worker's own environment, plus the run's id (how any process of a run is found, the supervisor too).
    env: { EXPCTL_EXPERIMENT_ID: options.experimentId },
    detached: true,
    ipc: true,
    serialization: 'json',
    stdin: 'pipe',
    stdout: 'ignore',
    stderr: 'pipe',
    reject: false,
    cleanup: false,
  });
  const supervisorPid = supervisor.pid;
  if (supervisorPid === undefined) {
    await removeRunContainment(planned);
    throw new Error('could not start the training supervisor');
  }
  try {
    await options.beforeTraining?.();
  } catch (error) {
    // Still waiting for its stdin: it has started nothing, is in no cgroup, and writes nothing.
    supervisor.kill('SIGKILL');
    await supervisor;
    await removeRunContainment(planned);
    throw error;
  }
  supervisor.stdin!.end(JSON.stringify({ env: options.env, scrub: secretForms(options.secretValues ?? []) }));
  const ref: RunProcessesRef = { supervisorPid, pidNamespace: null };
  let exitMessage: Extract<SupervisorMessage, { type: 'exit' }> | undefined;
  const exited = supervisor.then(async (result): Promise<SupervisorExit> => {
    // The exit file is written before the message is sent: it is the record, the message a shortcut.
    const recorded = options.files ? await readExitFile(options.files.exit) : undefined;
    if (recorded) return recorded;
    return {
      reported: exitMessage !== undefined,
      exitCode: exitMessage ? exitMessage.exitCode : null,
      signal: exitMessage ? exitMessage.signal : (result.signal ?? null),
    };
  });
  const run = runHandle(supervisorPid, planned, ref, exited);
  supervisor.on('message', (message: SupervisorMessage) => {
    if (message.type === 'exit') exitMessage = message;
    if (message.type === 'started') applyStarted(run, ref, planned, message);
  });
  return run;
}

function applyStarted(
  run: StartedRun,
  ref: RunProcessesRef,
  planned: RunContainment,
  started: Extract<SupervisorMessage, { type: 'started' }>,
): void {
  ref.pidNamespace = started.pidNamespace;
  if (started.containment !== planned.kind)
    run.containment = { kind: started.containment, cgroup: null, memoryDir: null };
}

function runHandle(
  supervisorPid: number,
  planned: RunContainment,
  ref: RunProcessesRef,
  exited: Promise<SupervisorExit>,
): StartedRun {
  // The SIGKILL that follows a stop's SIGTERM, until the run is finished: once it is, the same
  // cgroup may already hold a later attempt of the experiment, which a late kill must not reach.
  let pendingKill: NodeJS.Timeout | undefined;
  let finished = false;
  const run: StartedRun = {
    supervisorPid,
    containment: planned,
    exited,
    async stop(killAfterMs) {
      if (finished) return;
      await signalRun(run.containment, ref, 'SIGTERM', supervisorPid);
      clearTimeout(pendingKill);
      pendingKill = setTimeout(() => {
        if (!finished) void killRun(run.containment, ref, { except: supervisorPid });
      }, killAfterMs);
      pendingKill.unref();
    },
    async finish() {
      clearTimeout(pendingKill);
      while (!(await killRun(run.containment, ref, { timeoutMs: 10_000 }))) {
        // Something of the run survives SIGKILL for now (uninterruptible I/O): the lease waits for it.
      }
      finished = true;
      clearTimeout(pendingKill);
      const evidence = await memoryEvidence(run.containment);
      await removeRunContainment(planned);
      return evidence;
    },
  };
  return run;
}

/**
 * Takes over a run whose supervisor was started by an earlier worker process (or has exited since):
 * `exited` resolves once the supervisor is gone, from its exit file. `planned` is the containment
 * the earlier worker created (kept in the run's record).
 */
export async function adoptRun(options: {
  supervisorPid: number;
  planned: RunContainment;
  files: SupervisorFiles;
  pollMs?: number;
}): Promise<StartedRun> {
  const { supervisorPid, planned, files } = options;
  const ref: RunProcessesRef = { supervisorPid, pidNamespace: null };
  const exited = (async (): Promise<SupervisorExit> => {
    while (processAlive(supervisorPid)) await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 250));
    return (await readExitFile(files.exit)) ?? { reported: false, exitCode: null, signal: null };
  })();
  const run = runHandle(supervisorPid, planned, ref, exited);
  const started = await fs.readFile(files.started, 'utf8').catch(() => undefined);
  if (started) applyStarted(run, ref, planned, JSON.parse(started) as Extract<SupervisorMessage, { type: 'started' }>);
  return run;
}
