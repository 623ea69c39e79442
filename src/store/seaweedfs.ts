import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { userCacheDir } from '../shared/settings.js';

/**
 * SeaweedFS (Apache-2.0), the S3-compatible server the store's tests and benchmark run against:
 * the pinned module version, built once from the Go module proxy and cached per user, as the
 * Temporal CLI is. Its go.mod has replace directives, so `go install module@version` is refused;
 * the module is downloaded and built inside a writable copy instead.
 */
export const SEAWEEDFS_MODULE = 'github.com/seaweedfs/seaweedfs';
export const SEAWEEDFS_VERSION = 'v0.0.0-20261109003541-7506e5f91cd6';

/** What a skipped S3 test or a failed build tells the reader to run. */
export const SEAWEEDFS_INSTALL_HINT =
  'scripts/install-seaweedfs (builds the pinned SeaweedFS with Go once, about 10 minutes, cached per user), or set EXPCTL_SEAWEEDFS=/path/to/weed';

/** Raised when no SeaweedFS can be provided; the message says what to do. */
export class SeaweedFsUnavailableError extends Error {}

type Log = (line: string) => void;

async function isExecutable(file: string): Promise<boolean> {
  try {
    await fs.access(file, fsConstants.X_OK);
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

export function cachedSeaweedFsPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(userCacheDir(env), 'seaweedfs', SEAWEEDFS_VERSION, 'weed');
}

async function onPath(name: string, env: NodeJS.ProcessEnv): Promise<string | null> {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir && (await isExecutable(path.join(dir, name)))) return path.join(dir, name);
  }
  return null;
}

/**
 * A SeaweedFS binary without building one: $EXPCTL_SEAWEEDFS (refused when it is no executable),
 * else the per-user cache, else `weed` on PATH; null when there is none.
 */
export async function findSeaweedFs(env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  if (env.EXPCTL_SEAWEEDFS) {
    const explicit = path.resolve(env.EXPCTL_SEAWEEDFS);
    if (!(await isExecutable(explicit)))
      throw new SeaweedFsUnavailableError(`EXPCTL_SEAWEEDFS=${env.EXPCTL_SEAWEEDFS} is not an executable file.`);
    return explicit;
  }
  const cached = cachedSeaweedFsPath(env);
  if (await isExecutable(cached)) return cached;
  return onPath('weed', env);
}

async function commandExists(command: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const found = await execa(command, ['version'], { timeout: 30_000, env, extendEnv: false, reject: false });
  return found.exitCode === 0;
}

const lastLines = (error: unknown) =>
  (error as { stderr?: string }).stderr?.trim().split('\n').slice(-5).join('\n') || String(error);

/** The module's directory in the Go module cache (downloaded from the proxy when not there yet). */
async function downloadModule(env: NodeJS.ProcessEnv, cwd: string, signal?: AbortSignal): Promise<string> {
  const { stdout } = await execa('go', ['mod', 'download', '-json', `${SEAWEEDFS_MODULE}@${SEAWEEDFS_VERSION}`], {
    cwd,
    env,
    extendEnv: false,
    cancelSignal: signal,
  });
  const dir = (JSON.parse(stdout) as { Dir?: string }).Dir;
  if (!dir) throw new Error(`'go mod download' named no directory for ${SEAWEEDFS_MODULE}@${SEAWEEDFS_VERSION}`);
  return dir;
}

/** Builds `weed` in a writable copy of the module (the cache's copy is read-only), then moves it into place atomically. */
async function buildWithGo(target: string, log: Log, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<void> {
  log(
    `expctl: building SeaweedFS ${SEAWEEDFS_VERSION} with Go from the module proxy (first time only, about 10 minutes)...`,
  );
  const work = await fs.mkdtemp(path.join(path.dirname(target), '.build-'));
  try {
    const module = await downloadModule(env, work, signal);
    const source = path.join(work, 'src');
    await fs.cp(module, source, { recursive: true });
    await execa('chmod', ['-R', 'u+w', source]);
    const built = path.join(work, 'weed');
    await execa('go', ['build', '-o', built, './weed'], {
      cwd: source,
      // No VCS stamp: the copy is no checkout, and one it sits inside must not be read.
      env: { ...env, GOFLAGS: [env.GOFLAGS, '-buildvcs=false'].filter(Boolean).join(' ') },
      extendEnv: false,
      stdout: 'inherit',
      stderr: 'pipe',
      cancelSignal: signal,
    });
    await fs.rename(built, target);
  } catch (error) {
    throw new SeaweedFsUnavailableError(
      `building SeaweedFS ${SEAWEEDFS_VERSION} with Go failed:\n${lastLines(error)}\nProvide it yourself: set EXPCTL_SEAWEEDFS=/path/to/weed, or put 'weed' on PATH.`,
    );
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/**
 * Returns the path of a usable SeaweedFS: $EXPCTL_SEAWEEDFS, else the per-user cache, else built
 * with Go into the cache. `weed` on PATH is not taken here (it may be another version); the tests
 * accept one (findSeaweedFs). Idempotent and safe to run concurrently.
 */
export async function ensureSeaweedFs(
  options: { env?: NodeJS.ProcessEnv; log?: Log; signal?: AbortSignal } = {},
): Promise<string> {
  const env = options.env ?? process.env;
  const log = options.log ?? ((line: string) => console.error(line));
  if (env.EXPCTL_SEAWEEDFS) return (await findSeaweedFs(env))!;
  const target = cachedSeaweedFsPath(env);
  if (await isExecutable(target)) return target;
  await fs.mkdir(path.dirname(target), { recursive: true });
  if (!(await commandExists('go', env)))
    throw new SeaweedFsUnavailableError(
      `No Go toolchain on PATH to build SeaweedFS ${SEAWEEDFS_VERSION}: install Go (https://go.dev/dl/) and rerun, or set EXPCTL_SEAWEEDFS=/path/to/weed.`,
    );
  await buildWithGo(target, log, env, options.signal);
  return target;
}
