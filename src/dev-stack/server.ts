import fs from 'node:fs/promises';
import path from 'node:path';
import { devServerPidPath, type DevServerRecord } from '../temporal/connection.js';
import { AbortedError, describeExit, startDevServer, type DevServer } from '../temporal/dev-server.js';
import { isPortFree } from '../shared/ports.js';
import { devPorts } from '../shared/settings.js';
import { identityOf, isRunning, readJsonFile, stopProcess } from '../temporal/pid-file.js';
import { ensureTemporalCli } from '../temporal/temporal-cli.js';
import { PRIVATE_FILE } from '../security/files.js';
import { forwardToLoopback } from '../temporal/forward.js';
import type { ListenPlan } from '../temporal/listen.js';
import { EXIT_CODES } from '../domain/exit-codes.js';
import type { StackLifetime } from './lifetime.js';

/** Restarts of a dead server allowed within RESTART_WINDOW_MS before `expctl dev` gives up. */
const MAX_SERVER_RESTARTS = 5;
const RESTART_WINDOW_MS = 10 * 60_000;
const restartDelayMs = (attempt: number) => Math.min(30_000, 1000 * 2 ** (attempt - 1));

/**
 * The stack's Temporal dev server (SQLite in the state directory, Web UI), started and then
 * supervised: restarted on the same database each time it dies, stopped last when the stack stops.
 * With a forward address, other hosts reach it through forwarders that outlive its restarts.
 */
export async function superviseDevServer(plan: ListenPlan, lifetime: StackLifetime, home: string): Promise<DevServer> {
  const { signal, log } = lifetime;
  const binary = await ensureTemporalCli({ signal });
  if (signal.aborted) throw new AbortedError();
  const ports = devPorts();
  const dbFile = path.join(home, 'temporal.db');
  const startServer = (readyTimeoutMs?: number) =>
    startDevServer({
      binary,
      dbFile,
      ip: plan.serverIp,
      grpcPort: ports.grpcPort,
      uiPort: ports.uiPort,
      logFile: path.join(home, 'logs', 'temporal.log'),
      signal,
      readyTimeoutMs,
      // The workers finish their shutdown through it (in-flight work, deregistration): a Ctrl-C
      // to the terminal's group must not stop it first; the lifetime stops it last.
      ownProcessGroup: true,
      onSpawn: async (pid) => {
        const record: DevServerRecord = { ...identityOf(pid), dbFile, address: `${plan.serverIp}:${ports.grpcPort}` };
        await fs.writeFile(devServerPidPath(), JSON.stringify(record, null, 2), PRIVATE_FILE);
      },
    });
  let server: DevServer | undefined;
  // Registered before the start, so a stop during it also clears the pid file.
  lifetime.onStop(async () => {
    await server?.stop();
    await fs.rm(devServerPidPath(), { force: true });
  });
  log(`expctl: starting Temporal (state in ${dbFile}) ...`);
  server = await startServer();
  void restartWhenDead(server, lifetime, async () => (server = await startServer(10 * 60_000)));
  if (plan.forwardIp) {
    // Other hosts connect here; the forwarders outlive server restarts (each connection is joined anew).
    for (const port of [ports.grpcPort, ports.uiPort]) {
      const forwarder = await forwardToLoopback(plan.forwardIp, port);
      lifetime.onStop(() => forwarder.close());
    }
  }
  return server;
}

/**
 * A server whose `expctl dev` was SIGKILLed keeps running on the database. Holding the lock,
 * this process is the only one that may own that database, so it stops the orphan and starts fresh.
 */
export async function stopOrphanedServer(ip: string, log: (line: string) => void): Promise<void> {
  const orphan = readJsonFile<DevServerRecord>(devServerPidPath());
  if (orphan && isRunning({ pid: orphan.pid, startTime: orphan.startTime ?? null })) {
    log(
      `expctl: stopping the Temporal server (pid ${orphan.pid}) left running on ${orphan.dbFile} by an earlier expctl dev ...`,
    );
    await stopProcess({ pid: orphan.pid, startTime: orphan.startTime ?? null });
    // The kernel may hand its listening ports back a little after the process is gone.
    const { grpcPort, uiPort } = devPorts();
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && !((await isPortFree(grpcPort, ip)) && (await isPortFree(uiPort, ip)))) {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  await fs.rm(devServerPidPath(), { force: true });
}

/**
 * Restarts the server on the same database and ports each time it dies, with backoff, and gives
 * up (stopping the stack) only after MAX_SERVER_RESTARTS deaths within RESTART_WINDOW_MS. A server
 * that is alive but slow or frozen is never acted on: the workers' connections wait it out.
 */
async function restartWhenDead(
  first: DevServer,
  lifetime: StackLifetime,
  restart: () => Promise<DevServer>,
): Promise<void> {
  const { log } = lifetime;
  let current = first;
  const deaths: number[] = [];
  for (;;) {
    const exit = await current.exited;
    if (lifetime.stopped) return;
    const now = Date.now();
    deaths.push(now);
    while (deaths.length && deaths[0]! < now - RESTART_WINDOW_MS) deaths.shift();
    if (deaths.length > MAX_SERVER_RESTARTS) {
      log(
        `expctl: the Temporal server died ${deaths.length} times within ${RESTART_WINDOW_MS / 60_000} minutes (last: ${describeExit(exit)}); giving up. See logs/temporal.log in the state directory.`,
      );
      await lifetime.stop();
      process.exit(EXIT_CODES.internal_error);
    }
    const delay = restartDelayMs(deaths.length);
    log(
      `expctl: the Temporal server exited (${describeExit(exit)}); restarting it on the same database in ${delay / 1000}s (restart ${deaths.length} of at most ${MAX_SERVER_RESTARTS} per ${RESTART_WINDOW_MS / 60_000} minutes) ...`,
    );
    if (!(await lifetime.sleep(delay))) return;
    try {
      current = await restart();
      log(`expctl: the Temporal server is back at ${current.address}; the workers reconnect by themselves.`);
    } catch (error) {
      if (lifetime.stopped) return;
      log(`expctl: restarting the Temporal server failed: ${(error as Error).message}`);
      // Counts as another death; the loop waits on an already-settled exit.
      current = { ...current, exited: Promise.resolve({ exitCode: undefined }) };
    }
  }
}
