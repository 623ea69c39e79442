import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { ContainmentKind } from '../domain/experiment.js';
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

const SUPERVISOR = fileURLToPath(new URL('./supervisor.mjs', import.meta.url));

/** The raw log's default cap: the supervisor keeps its first 2 GiB, then only the last bytes. */
export const DEFAULT_LOG_CAP_BYTES = 2 * 1024 ** 3;
/** What is kept of the output beyond the cap (it holds the `---` block). */
export const DEFAULT_LOG_TAIL_BYTES = 1024 * 1024;

/** How the supervisor ended: `reported` is false when it died before telling how its child exited. */
export interface SupervisorExit {
  reported: boolean;
  exitCode: number | null;
  signal: string | null;
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
  env: Record<string, string>;
  logCapBytes?: number | undefined;
  logTailBytes?: number | undefined;
}): Promise<StartedRun> {
  const planned = await createRunContainment(options.support, options.experimentId);
  const config = {
    log: options.log,
    cwd: options.cwd,
    cgroup: planned.cgroup,
    pidNamespace: planned.kind === 'pid-namespace',
    logCapBytes: options.logCapBytes ?? DEFAULT_LOG_CAP_BYTES,
    tailBytes: options.logTailBytes ?? DEFAULT_LOG_TAIL_BYTES,
  };
  const supervisor = execa(process.execPath, [SUPERVISOR, JSON.stringify(config), '--', ...options.command], {
    env: options.env,
    detached: true,
    ipc: true,
    serialization: 'json',
    stdin: 'ignore',
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
  const ref: RunProcessesRef = { supervisorPid, pidNamespace: null };
  let exitMessage: Extract<SupervisorMessage, { type: 'exit' }> | undefined;
  const run: StartedRun = {
    supervisorPid,
    containment: planned,
    exited: supervisor.then((result) => ({
      reported: exitMessage !== undefined,
      exitCode: exitMessage ? exitMessage.exitCode : null,
      signal: exitMessage ? exitMessage.signal : (result.signal ?? null),
    })),
    async stop(killAfterMs) {
      await signalRun(run.containment, ref, 'SIGTERM', supervisorPid);
      setTimeout(() => void killRun(run.containment, ref, { except: supervisorPid }), killAfterMs).unref();
    },
    async finish() {
      while (!(await killRun(run.containment, ref, { timeoutMs: 10_000 }))) {
        // Something of the run survives SIGKILL for now (uninterruptible I/O): the lease waits for it.
      }
      const evidence = await memoryEvidence(run.containment);
      await removeRunContainment(planned);
      return evidence;
    },
  };
  supervisor.on('message', (message: SupervisorMessage) => {
    if (message.type === 'exit') exitMessage = message;
    if (message.type === 'started') {
      ref.pidNamespace = message.pidNamespace;
      if (message.containment !== planned.kind) run.containment = { kind: message.containment, cgroup: null, memoryDir: null };
    }
  });
  return run;
}
