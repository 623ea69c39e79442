import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type Options } from 'execa';
import { processAlive } from '../shared/processes.js';
import { secretForms } from '../domain/redact.js';
import { createStreamScrubber } from './stream-scrub.mjs';
import { PRIVATE_DIR_MODE, PRIVATE_FILE, PRIVATE_FILE_MODE } from '../security/files.js';

/**
 * Environment setup, a phase of its own before training (BRIEF §2): `uv sync` for `uv run` commands
 * in a uv project, and the request's `setup` argv. The environment lives outside the worktree, in a
 * directory keyed by the lockfiles' hashes and the setup argv, so every worktree of the same lockfile
 * shares it: a ready marker makes later runs skip setup, a lock file makes concurrent setups of one
 * key (slots of one worker, or two workers on one host) wait for each other.
 */

/** Files whose content decides what an environment holds. */
export const ENVIRONMENT_LOCKFILES = ['uv.lock', 'pyproject.toml'] as const;
const WAIT_POLL_MS = 250;

export interface SetupStep {
  label: string;
  argv: string[];
}

export interface SetupPlan {
  /** sha256 over the lockfile hashes and the steps; names the environment directory. */
  key: string;
  steps: SetupStep[];
  /** Variables the steps and the training command get (UV_PROJECT_ENVIRONMENT, EXPCTL_ENV_DIR, ...). */
  env: Record<string, string>;
  envDir: string;
  readyMarker: string;
  lockFile: string;
}

export function isUvRun(command: readonly string[]): boolean {
  return command[0] === 'uv' && command[1] === 'run';
}

/**
 * The steps a run needs, from its command, its `setup` argv and which lockfiles its commit holds. Pure.
 * `--no-install-project`: the shared environment must not point into one run's worktree.
 */
export function setupSteps(
  command: readonly string[],
  setup: readonly string[] | undefined,
  present: ReadonlySet<string>,
): SetupStep[] {
  const steps: SetupStep[] = [];
  if (isUvRun(command) && (present.has('uv.lock') || present.has('pyproject.toml'))) {
    const argv = ['uv', 'sync', ...(present.has('uv.lock') ? ['--frozen'] : []), '--no-install-project'];
    steps.push({ label: argv.join(' '), argv });
  }
  if (setup && setup.length > 0) steps.push({ label: `setup ${JSON.stringify(setup)}`, argv: [...setup] });
  return steps;
}

/** The environment's key: the same lockfiles and the same steps give the same environment. Pure. */
export function setupKey(lockfileHashes: Record<string, string>, steps: readonly SetupStep[]): string {
  const names = Object.keys(lockfileHashes).sort();
  const material = JSON.stringify({
    lockfiles: names.map((name) => [name, lockfileHashes[name]]),
    steps: steps.map((s) => s.argv),
  });
  return crypto.createHash('sha256').update(material).digest('hex');
}

/** Reads the worktree's lockfiles and plans its setup; null when the run needs none. */
export async function planSetup(options: {
  tree: string;
  envsRoot: string;
  command: readonly string[];
  setup: readonly string[] | undefined;
}): Promise<SetupPlan | null> {
  const hashes: Record<string, string> = {};
  for (const name of ENVIRONMENT_LOCKFILES) {
    const content = await fs.readFile(path.join(options.tree, name)).catch(() => null);
    if (content) hashes[name] = crypto.createHash('sha256').update(content).digest('hex');
  }
  const steps = setupSteps(options.command, options.setup, new Set(Object.keys(hashes)));
  const uvProject = isUvRun(options.command) && Object.keys(hashes).length > 0;
  if (steps.length === 0) return null;
  const key = setupKey(hashes, steps);
  const dir = path.join(path.resolve(options.envsRoot), key.slice(0, 24));
  const envDir = path.join(dir, 'env');
  return {
    key,
    steps,
    env: { EXPCTL_ENV_DIR: envDir, ...(uvProject ? { UV_PROJECT_ENVIRONMENT: envDir } : {}) },
    envDir,
    readyMarker: path.join(dir, 'ready'),
    lockFile: path.join(dir, 'lock'),
  };
}

/** Variables for the training command: the set-up environment, used as is (no second sync). */
export function trainingEnvironment(plan: SetupPlan | null): Record<string, string> {
  if (!plan) return {};
  return plan.env.UV_PROJECT_ENVIRONMENT ? { ...plan.env, UV_NO_SYNC: '1' } : { ...plan.env };
}

export type SetupResult =
  | { ok: true; cached: boolean; seconds: number }
  | {
      ok: false;
      seconds: number;
      timedOut: boolean;
      canceled: boolean;
      exitCode: number | null;
      signal: string | null;
      reason: string;
    };

export interface RunSetupOptions {
  plan: SetupPlan;
  cwd: string;
  logFile: string;
  /** The environment of the run (request env, CUDA_VISIBLE_DEVICES, ...); the plan's variables are added. */
  env: Record<string, string>;
  /** Values replaced in the steps' output before it reaches the log (the run's secret-looking --env values). */
  secretValues?: readonly string[];
  timeoutSeconds: number;
  /** After SIGTERM, how long a step's process group gets before SIGKILL. */
  killAfterMs: number;
  signal: AbortSignal;
}

const exists = (file: string) =>
  fs.access(file).then(
    () => true,
    () => false,
  );
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Takes the key's lock (O_EXCL), clearing one left by a dead process on this host. */
async function tryLock(lockFile: string): Promise<boolean> {
  try {
    const handle = await fs.open(lockFile, 'wx', PRIVATE_FILE_MODE);
    await handle.writeFile(`${os.hostname()} ${process.pid}\n`);
    await handle.close();
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const [host, pid] = (await fs.readFile(lockFile, 'utf8').catch(() => '')).trim().split(' ');
  if (host === os.hostname() && pid && !processAlive(Number(pid))) await fs.rm(lockFile, { force: true });
  return false;
}

/**
 * Brings the plan's environment to ready: returns at once when a ready marker exists, waits while
 * another setup of the same key holds the lock, else runs the steps under the lock. Output goes to
 * the run's log between delimiters. A failed or timed-out setup removes what it built and leaves no
 * marker, so the next run starts clean.
 */
export async function runSetup(options: RunSetupOptions): Promise<SetupResult> {
  const { plan } = options;
  const started = Date.now();
  const deadline = started + options.timeoutSeconds * 1000;
  const seconds = () => (Date.now() - started) / 1000;
  const note = (text: string) => fs.appendFile(options.logFile, `expctl: ${text}\n`, PRIVATE_FILE);
  const failed = (fields: Partial<Extract<SetupResult, { ok: false }>> & { reason: string }): SetupResult => ({
    ok: false,
    seconds: seconds(),
    timedOut: false,
    canceled: false,
    exitCode: null,
    signal: null,
    ...fields,
  });
  await fs.mkdir(path.dirname(plan.readyMarker), { recursive: true, mode: PRIVATE_DIR_MODE });

  let waited = false;
  for (;;) {
    if (await exists(plan.readyMarker)) {
      await note(
        `setup: environment ${plan.key.slice(0, 12)} is ready (${plan.envDir}); skipped${waited ? ' after waiting for another setup' : ''}`,
      );
      return { ok: true, cached: true, seconds: seconds() };
    }
    if (options.signal.aborted) return failed({ canceled: true, reason: 'canceled during environment setup' });
    if (Date.now() > deadline) {
      return failed({
        timedOut: true,
        reason: `environment setup exceeded its limit of ${options.timeoutSeconds}s while waiting for another setup of the same environment`,
      });
    }
    if (await tryLock(plan.lockFile)) break;
    if (!waited) await note(`setup: waiting for another setup of environment ${plan.key.slice(0, 12)}`);
    waited = true;
    await sleep(WAIT_POLL_MS);
  }

  try {
    // Another setup may have finished between our last look and taking the lock.
    if (await exists(plan.readyMarker)) return { ok: true, cached: true, seconds: seconds() };
    await fs.rm(plan.envDir, { recursive: true, force: true });
    for (const step of plan.steps) {
      await note(`setup: ===== ${step.label} (environment ${plan.envDir}) =====`);
      const result = await runStep(step, options, deadline);
      await note(`setup: ===== end of ${step.label}: ${result.description} =====`);
      if (!result.ok) {
        await fs.rm(plan.envDir, { recursive: true, force: true });
        const how = result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`;
        const reason = result.timedOut
          ? `environment setup exceeded its limit of ${options.timeoutSeconds}s (${step.label}); the process group was killed`
          : result.canceled
            ? `canceled during environment setup (${step.label})`
            : `environment setup failed: ${step.label} exited with ${how}`;
        return failed({
          reason,
          timedOut: result.timedOut,
          canceled: result.canceled,
          exitCode: result.exitCode,
          signal: result.signal,
        });
      }
    }
    await fs.writeFile(
      plan.readyMarker,
      `${JSON.stringify({ key: plan.key, steps: plan.steps.map((s) => s.argv), readyAt: new Date().toISOString() })}\n`,
      PRIVATE_FILE,
    );
    return { ok: true, cached: false, seconds: seconds() };
  } finally {
    await fs.rm(plan.lockFile, { force: true });
  }
}

interface StepResult {
  ok: boolean;
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  canceled: boolean;
  description: string;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** A step's output stream: appended to the log, through a scrubber of the run's secret values if it has any. */
function toLog(options: RunSetupOptions): Options['stdout'] {
  const file = { file: options.logFile, append: true };
  const forms = secretForms(options.secretValues ?? []);
  if (forms.length === 0) return file;
  const scrubber = createStreamScrubber(forms);
  const scrub = {
    // With `binary`, execa hands over the bytes as they come (Uint8Array), not lines.
    *transform(chunk: unknown) {
      yield scrubber.push(Buffer.from(chunk as Uint8Array));
    },
    *final() {
      yield scrubber.end();
    },
    binary: true,
  } as const;
  return [scrub, file];
}

/** One step as the leader of its own process group (no shell), killed whole on timeout or cancel. */
async function runStep(step: SetupStep, options: RunSetupOptions, deadline: number): Promise<StepResult> {
  const [program, ...args] = step.argv as [string, ...string[]];
  const child = execa(program, args, {
    cwd: options.cwd,
    env: { ...options.env, ...options.plan.env },
    extendEnv: true,
    detached: true,
    stdin: 'ignore',
    stdout: toLog(options),
    stderr: toLog(options),
    reject: false,
  });
  let timedOut = false;
  let canceled = false;
  let killer: NodeJS.Timeout | undefined;
  const stop = (why: 'timeout' | 'cancel') => {
    if (timedOut || canceled || child.pid === undefined) return;
    if (why === 'timeout') timedOut = true;
    else canceled = true;
    killGroup(child.pid, 'SIGTERM');
    killer = setTimeout(() => killGroup(child.pid!, 'SIGKILL'), options.killAfterMs);
  };
  const limit = setTimeout(() => stop('timeout'), Math.max(0, deadline - Date.now()));
  const onAbort = () => stop('cancel');
  options.signal.addEventListener('abort', onAbort);
  const result = await child;
  clearTimeout(limit);
  options.signal.removeEventListener('abort', onAbort);
  // The leader is gone; anything it left in its group goes too.
  if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
  clearTimeout(killer);
  const signal = result.signal ?? null;
  const failedToStart = result.failed && result.exitCode === undefined && signal === null;
  const exitCode = result.exitCode ?? null;
  const description = failedToStart
    ? `could not start: ${result.shortMessage}`
    : signal
      ? `killed by ${signal}`
      : `exit code ${exitCode}`;
  return {
    ok: !timedOut && !canceled && exitCode === 0,
    exitCode: failedToStart ? 127 : exitCode,
    signal,
    timedOut,
    canceled,
    description,
  };
}
