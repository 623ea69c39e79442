import fs from 'node:fs/promises';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { execa, type ResultPromise } from 'execa';
import { ensurePrivateFile, narrowFile, PRIVATE_DIR_MODE } from '../security/files.js';
import { isPortFree } from '../shared/ports.js';
import { SEARCH_ATTRIBUTE_TYPE_NAMES } from '../shared/search-attributes.js';

export class PortInUseError extends Error {
  constructor(
    readonly port: number,
    readonly variable: string,
  ) {
    super(`port ${port} is already in use by another process; set ${variable} to a free port`);
  }
}

export interface DevServerOptions {
  binary: string;
  dbFile: string;
  ip: string;
  grpcPort: number;
  uiPort: number;
  /** Server output goes here, so the terminal stays readable. */
  logFile: string;
  /** Env var names that choose the ports, for the error when one is taken. */
  portVariables?: { grpc: string; ui: string };
  /** Aborting stops the server if it is still starting, and the start rejects with AbortedError. */
  signal?: AbortSignal;
  /** How long to wait for gRPC and the Web UI to answer (default 60 s). */
  readyTimeoutMs?: number;
  /** Called with the server's pid as soon as it is spawned, before it answers. */
  onSpawn?: (pid: number) => void | Promise<void>;
  /**
   * Run the server in a process group of its own, out of reach of the Ctrl-C that reaches the
   * terminal's group, for a caller that stops it itself, after what depends on it (`expctl dev`).
   * Default: the caller's group, so an interrupted caller (a test run) takes it along.
   */
  ownProcessGroup?: boolean;
}

/** The start was aborted (a stop was asked for while the server was starting). */
export class AbortedError extends Error {
  constructor() {
    super('aborted');
  }
}

export interface DevServer {
  address: string;
  uiUrl: string;
  pid: number;
  /** Resolves when the server process has exited, with how it ended. */
  exited: Promise<ServerExit>;
  stop(): Promise<void>;
}

export interface ServerExit {
  exitCode?: number;
  signal?: string;
}

export function describeExit(exit: ServerExit): string {
  return exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.exitCode ?? 'unknown'}`;
}

async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  exited: { done: boolean; detail: () => Promise<string> },
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (signal?.aborted) throw new AbortedError();
    if (exited.done) throw new Error(`the Temporal dev server exited while starting:\n${await exited.detail()}`);
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
}

async function grpcHealthy(address: string): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address, connectTimeout: 1000 });
    await connection.workflowService.getSystemInfo({});
    // The default namespace is registered a moment after the frontend answers.
    await connection.workflowService.describeNamespace({ namespace: 'default' });
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return response.status === 200;
  } catch {
    return false;
  }
}

/**
 * Starts `temporal server start-dev` on a SQLite file with the project's search attributes
 * registered, and resolves once gRPC and the Web UI answer.
 */
export async function startDevServer(options: DevServerOptions): Promise<DevServer> {
  const vars = options.portVariables ?? { grpc: 'EXPCTL_TEMPORAL_PORT', ui: 'EXPCTL_UI_PORT' };
  if (options.signal?.aborted) throw new AbortedError();
  if (!(await isPortFree(options.grpcPort, options.ip))) throw new PortInUseError(options.grpcPort, vars.grpc);
  if (!(await isPortFree(options.uiPort, options.ip))) throw new PortInUseError(options.uiPort, vars.ui);
  await fs.mkdir(path.dirname(options.dbFile), { recursive: true, mode: PRIVATE_DIR_MODE });
  await fs.mkdir(path.dirname(options.logFile), { recursive: true, mode: PRIVATE_DIR_MODE });
  await ensurePrivateFile(options.logFile);
  // The server must create its database itself (it sets the schema up only in a new file): an
  // existing one is narrowed now, a new one once the server is up; the CLI's umask covers between.
  const narrowDatabase = () =>
    Promise.all(['', '-wal', '-shm'].map((suffix) => narrowFile(`${options.dbFile}${suffix}`)));
  await narrowDatabase();

  const args = [
    'server',
    'start-dev',
    '--db-filename',
    options.dbFile,
    '--ip',
    options.ip,
    '--port',
    String(options.grpcPort),
    '--ui-port',
    String(options.uiPort),
    '--log-level',
    'warn',
    ...Object.entries(SEARCH_ATTRIBUTE_TYPE_NAMES).flatMap(([name, type]) => ['--search-attribute', `${name}=${type}`]),
  ];
  const ownGroup = options.ownProcessGroup ?? false;
  const child: ResultPromise = execa(options.binary, args, {
    stdin: 'ignore',
    stdout: { file: options.logFile, append: true },
    stderr: { file: options.logFile, append: true },
    reject: false,
    detached: ownGroup,
    // Whatever ends this process but SIGKILL (a crash included) takes the server along: execa's
    // cleanup does it, but skips a detached child, for which the exit hook below does it.
    cleanup: !ownGroup,
  });
  const killOnExit = () => child.kill('SIGTERM');
  if (ownGroup) process.once('exit', killOnExit);
  const state = {
    done: false,
    detail: async () =>
      (await fs.readFile(options.logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-10).join('\n'),
  };
  const exited: Promise<ServerExit> = child.then((result) => {
    state.done = true;
    process.off('exit', killOnExit);
    return { exitCode: result.exitCode, signal: result.signal };
  });
  // A server on every address is reached here on loopback.
  const localIp = options.ip === '0.0.0.0' ? '127.0.0.1' : options.ip;
  const address = `${localIp}:${options.grpcPort}`;
  const uiUrl = `http://${localIp === '127.0.0.1' ? 'localhost' : localIp}:${options.uiPort}`;
  const stop = async () => {
    if (state.done) return;
    child.kill('SIGTERM');
    // A frozen (SIGSTOPped) server acts on SIGTERM only once it runs again.
    try {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGCONT');
    } catch {
      // exited meanwhile
    }
    const killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killTimer);
  };
  const readyMs = options.readyTimeoutMs ?? 60_000;
  try {
    if (child.pid === undefined) throw new Error(`could not start ${options.binary}:\n${await state.detail()}`);
    await options.onSpawn?.(child.pid);
    await waitUntil(() => grpcHealthy(address), readyMs, `the Temporal frontend at ${address}`, state, options.signal);
    await waitUntil(() => httpOk(uiUrl), readyMs, `the Web UI at ${uiUrl}`, state, options.signal);
    await narrowDatabase();
  } catch (error) {
    await stop();
    throw error;
  }
  return { address, uiUrl, pid: child.pid!, exited, stop };
}
