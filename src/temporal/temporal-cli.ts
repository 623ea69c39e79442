import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { TEMPORAL_CLI_VERSION } from '../shared/constants.js';
import { userCacheDir } from '../shared/settings.js';

/** Raised when no Temporal CLI can be provided; the message says what to do. */
export class TemporalCliUnavailableError extends Error {}

type Log = (line: string) => void;

async function isExecutable(file: string): Promise<boolean> {
  try {
    await fs.access(file, fsConstants.X_OK);
    return (await fs.stat(file)).isFile();
  } catch {
    return false;
  }
}

async function commandExists(command: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    await execa(command, ['version'], { timeout: 30_000, env, extendEnv: false });
    return true;
  } catch {
    return false;
  }
}

export function cachedCliPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(userCacheDir(env), 'temporal-cli', TEMPORAL_CLI_VERSION, 'temporal');
}

const HOW_TO_PROVIDE =
  `Provide the Temporal CLI v${TEMPORAL_CLI_VERSION} yourself: download it from ` +
  `https://github.com/temporalio/cli/releases/tag/v${TEMPORAL_CLI_VERSION} (or install Go and rerun), ` +
  'then set TEMPORAL_CLI=/path/to/temporal.';

/** Builds the CLI from the Go module proxy into a temporary GOBIN, then moves it into place atomically. */
async function buildWithGo(target: string, log: Log, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<void> {
  log(
    `expctl: building the Temporal CLI v${TEMPORAL_CLI_VERSION} with 'go install' (first time only, takes a few minutes)...`,
  );
  const gobin = await fs.mkdtemp(path.join(path.dirname(target), '.build-'));
  try {
    await execa('go', ['install', `github.com/temporalio/cli/cmd/temporal@v${TEMPORAL_CLI_VERSION}`], {
      env: { ...env, GOBIN: gobin, CGO_ENABLED: '0' },
      extendEnv: false,
      stdout: 'inherit',
      stderr: 'pipe',
      cancelSignal: signal,
    });
    await fs.rename(path.join(gobin, 'temporal'), target);
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr?.trim().split('\n').slice(-5).join('\n') ?? String(error);
    throw new TemporalCliUnavailableError(`'go install' of the Temporal CLI failed:\n${detail}\n${HOW_TO_PROVIDE}`);
  } finally {
    await fs.rm(gobin, { recursive: true, force: true });
  }
}

function releaseArchiveUrl(env: NodeJS.ProcessEnv): string {
  const platform = { linux: 'linux', darwin: 'darwin' }[os.platform() as string];
  const arch = { x64: 'amd64', arm64: 'arm64' }[os.arch() as string];
  if (!platform || !arch) {
    throw new TemporalCliUnavailableError(
      `No Temporal CLI release for ${os.platform()}/${os.arch()}. ${HOW_TO_PROVIDE}`,
    );
  }
  const v = TEMPORAL_CLI_VERSION;
  const base = env.EXPCTL_TEMPORAL_DOWNLOAD_BASE ?? 'https://github.com/temporalio/cli/releases/download';
  return `${base}/v${v}/temporal_cli_${v}_${platform}_${arch}.tar.gz`;
}

/** Without Go, fetches the official release archive and unpacks the binary. */
async function downloadRelease(target: string, log: Log, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<void> {
  const url = releaseArchiveUrl(env);
  log(`expctl: no Go toolchain found; downloading ${url} ...`);
  const dir = await fs.mkdtemp(path.join(path.dirname(target), '.download-'));
  try {
    const timeout = AbortSignal.timeout(120_000);
    const response = await fetch(url, { signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const archive = path.join(dir, 'temporal.tar.gz');
    await fs.writeFile(archive, Buffer.from(await response.arrayBuffer()));
    await execa('tar', ['-xzf', archive, '-C', dir, 'temporal']);
    await fs.rename(path.join(dir, 'temporal'), target);
  } catch (error) {
    throw new TemporalCliUnavailableError(
      `No Go toolchain on PATH and the download of ${url} failed (${(error as Error).message}). ${HOW_TO_PROVIDE}`,
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/**
 * Returns the path of a usable Temporal CLI: $TEMPORAL_CLI, else the per-user cache,
 * else built with Go into the cache, else downloaded. Idempotent and safe to run concurrently.
 */
export async function ensureTemporalCli(
  options: { env?: NodeJS.ProcessEnv; log?: Log; signal?: AbortSignal } = {},
): Promise<string> {
  const env = options.env ?? process.env;
  const log = options.log ?? ((line: string) => console.error(line));
  if (env.TEMPORAL_CLI) {
    const explicit = path.resolve(env.TEMPORAL_CLI);
    if (!(await isExecutable(explicit))) {
      throw new TemporalCliUnavailableError(`TEMPORAL_CLI=${env.TEMPORAL_CLI} is not an executable file.`);
    }
    return explicit;
  }
  const target = cachedCliPath(env);
  if (await isExecutable(target)) return target;
  await fs.mkdir(path.dirname(target), { recursive: true });
  if (await commandExists('go', env)) await buildWithGo(target, log, env, options.signal);
  else await downloadRelease(target, log, env, options.signal);
  return target;
}
