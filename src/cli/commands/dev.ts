import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { createGpuWorker, type GpuWorkerHandle } from '../../roots/gpu-worker.js';
import { ensureLocalAdmin, loadIssuerPublicKey } from '../../security/credentials.js';
import { createOrchestratorWorker, type OrchestratorWorker } from '../../roots/orchestrator.js';
import { payloadCodec } from '../../security/codec.js';
import { startDevCodecEndpoint } from '../../security/codec-server.js';
import { ensurePrivateDir, PRIVATE_FILE } from '../../security/files.js';
import { ensureKeyring, keySource } from '../../security/keyring.js';
import { installWorkerRuntime } from '../../shared/runtime.js';
import { catalogLocation, devPorts, fleetRemoteDir, gitPort, hostName, stateDir } from '../../shared/settings.js';
import { removeStackPointer, stackPointerPath, writeStackPointer, type StackPointer } from '../../shared/stack.js';
import { MIN_DEFAULT_CPU_SLOTS } from '../../gpu-worker/discover.js';
import { startFleetRemote, type ServedRemote } from '../../fleet-remote/server.js';
import { catalogRevocations } from './fleet-remote.js';
import {
  dataConverter,
  devInfoPath,
  devServerPidPath,
  readDevInfo,
  type DevServerRecord,
  type DevStackInfo,
} from '../../temporal/connection.js';
import { AbortedError, describeExit, startDevServer, type DevServer } from '../../temporal/dev-server.js';
import { isPortFree } from '../../shared/ports.js';
import { createExclusive, identityOf, isRunning, readJsonFile, stopProcess } from '../../temporal/pid-file.js';
import { ensureHealthSchedule } from '../../temporal/schedules.js';
import { ensureTemporalCli } from '../../temporal/temporal-cli.js';
import { forwardToLoopback } from '../../temporal/forward.js';
import { hostPort, listenPlan, type ListenPlan } from '../../temporal/listen.js';
import { CliError } from '../output.js';
import { runDemo } from '../demo.js';
import { CatalogView } from '../../client/catalog.js';
import { StackLifetime } from './dev-lifetime.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';

export interface DevOptions {
  demo: boolean;
  /** false with --no-worker: the control plane only (server, orchestrator); GPU hosts join with `expctl worker`. */
  worker: boolean;
  cpuSlots?: number;
  /** --listen ADDR (else EXPCTL_TEMPORAL_IP): the address other hosts reach Temporal on. */
  listen?: string;
}

/** Restarts of a dead server allowed within RESTART_WINDOW_MS before `expctl dev` gives up. */
const MAX_SERVER_RESTARTS = 5;
const RESTART_WINDOW_MS = 10 * 60_000;
const restartDelayMs = (attempt: number) => Math.min(30_000, 1000 * 2 ** (attempt - 1));

const log = (line: string) => console.error(line);

/**
 * `expctl dev` / `npm start`: the whole local stack in one process tree — Temporal dev server
 * (SQLite, Web UI), orchestrator worker, one GPU worker — until Ctrl-C stops all of it.
 * It restarts a server that dies, waits out one that is slow, and stops everything it started
 * on SIGINT/SIGTERM at any moment, start-up included.
 */
export async function devCommand(options: DevOptions): Promise<void> {
  const lifetime = new StackLifetime(log);
  lifetime.handleSignals();
  const home = stateDir();
  await ensurePrivateDir(home);

  const ports = devPorts();
  let plan: ListenPlan;
  let clientSettings: Pick<StackPointer, 'keyFile' | 'catalog'>;
  try {
    plan = listenPlan(options.listen ?? process.env.EXPCTL_TEMPORAL_IP, os.networkInterfaces(), os.hostname());
    const source = keySource();
    clientSettings = { keyFile: source.kind === 'file' ? source.file : null, catalog: catalogLocation() };
  } catch (error) {
    lifetime.releaseSignals();
    throw new CliError((error as Error).message);
  }
  const localIp = plan.serverIp === '0.0.0.0' ? '127.0.0.1' : plan.serverIp;
  const address = `${localIp}:${ports.grpcPort}`;
  const uiUrl = `http://${localIp === '127.0.0.1' ? 'localhost' : localIp}:${ports.uiPort}`;
  // Registered before the lock is taken, and the taking is part of start-up (a stop waits for it):
  // a signal at any moment, even while dev.json is being linked into place, leaves none of ours.
  lifetime.onStop(async () => {
    if (readDevInfo()?.pid === process.pid) await fs.rm(devInfoPath(), { force: true });
  });
  lifetime.onStop(async () => removeStackPointer(process.pid));
  const startedAt = new Date().toISOString();
  const running = await lifetime.startup(() =>
    acquireStateLock({ ...identityOf(process.pid), address, uiUrl, startedAt }),
  );
  if (running) {
    console.log(`expctl dev is already running (pid ${running.pid}) for ${home}`);
    console.log(`  Web UI: ${running.uiUrl}\n  gRPC:   ${running.address}`);
    console.log(`Stop it with Ctrl-C in its terminal or \`kill ${running.pid}\`.`);
    lifetime.releaseSignals();
    return;
  }
  // Every command of this user, from any directory, finds the stack through this pointer.
  const pointer: StackPointer = {
    version: 1,
    ...identityOf(process.pid),
    home,
    address,
    namespace: 'default',
    uiUrl,
    ...clientSettings,
    codecEndpoint: null,
    startedAt,
  };
  const isDefault = writeStackPointer(pointer);
  const stack = lifetime.startup(() => startStack(options, plan, lifetime, home, isDefault ? pointer : undefined));
  const started = await stack.catch((error: unknown) => {
    if (!(error instanceof AbortedError) && !lifetime.stopped) throw error;
    return undefined;
  });
  if (!started) return; // a signal arrived during start-up: the signal handler stops and exits
  if (options.demo && options.worker) {
    try {
      const catalog = await CatalogView.open(async () => started.client);
      await runDemo(started.client, { home, catalog, signal: lifetime.signal });
    } catch (error) {
      if (!lifetime.stopped) log(`expctl: the demo failed: ${(error as Error).message}`);
    }
  }
  await lifetime.finished;
}

/**
 * Takes the state directory's lock (dev.json, naming this process by pid and start time).
 * Returns the running stack that holds it, or undefined once this process holds it.
 */
async function acquireStateLock(info: DevStackInfo): Promise<DevStackInfo | undefined> {
  for (;;) {
    if (await createExclusive(devInfoPath(), JSON.stringify(info, null, 2))) return undefined;
    const holder = readDevInfo();
    if (holder && isRunning({ pid: holder.pid, startTime: holder.startTime ?? null })) return holder;
    // Left by an `expctl dev` that was killed: take it over (rename is atomic, so one taker wins).
    const stale = `${devInfoPath()}.stale-${process.pid}`;
    await fs.rename(devInfoPath(), stale).catch(() => undefined);
    await fs.rm(stale, { force: true });
  }
}

/**
 * A server whose `expctl dev` was SIGKILLed keeps running on the database. Holding the lock,
 * this process is the only one that may own that database, so it stops the orphan and starts fresh.
 */
async function stopOrphanedServer(ip: string): Promise<void> {
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

interface StartedStack {
  client: Client;
}

async function startStack(
  options: DevOptions,
  plan: ListenPlan,
  lifetime: StackLifetime,
  home: string,
  pointer: StackPointer | undefined,
): Promise<StartedStack> {
  const { signal } = lifetime;
  await stopOrphanedServer(plan.serverIp);
  // Payloads are encrypted with the state directory's keyring, made on the first start.
  const keys = await ensureKeyring();
  if (keys.created)
    log(`expctl: created the payload keyring ${keys.created.file}; it alone decrypts this stack's runs: keep it`);
  const converter = await dataConverter();
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
  void superviseServer(server, lifetime, async () => (server = await startServer(10 * 60_000)));
  if (plan.forwardIp) {
    // Other hosts connect here; the forwarders outlive server restarts (each connection is joined anew).
    for (const port of [ports.grpcPort, ports.uiPort]) {
      const forwarder = await forwardToLoopback(plan.forwardIp, port);
      lifetime.onStop(() => forwarder.close());
    }
  }
  // This user's admin credential and the fleet's issuer key (created on first start): the fleet
  // remote verifies requests against the key.
  const { credential } = ensureLocalAdmin();
  // Served to other hosts, the stack also serves the fleet's git remote: their commits travel through it.
  let fleetRemote: ServedRemote | undefined;
  if (plan.advertised) {
    fleetRemote = await startFleetRemote({
      dir: fleetRemoteDir(),
      listen: plan.forwardIp ?? plan.serverIp,
      port: gitPort(),
      advertised: plan.advertised,
      issuer: loadIssuerPublicKey(),
      isRevoked: catalogRevocations(),
      log,
    });
    lifetime.onStop(() => fleetRemote!.stop());
  }

  log(`expctl: starting the orchestrator${options.worker ? ' and the GPU worker' : ''} ...`);
  installWorkerRuntime();
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  lifetime.onStop(() => nativeConnection.close().catch(() => undefined));
  // Not closed on stop: a call still retrying (the demo's wait for a result) would throw
  // 'Channel has been shut down' from a timer; the process exits right after the stop anyway.
  const clientConnection = await Connection.connect({ address: server.address });
  const client = new Client({ connection: clientConnection, namespace: 'default', dataConverter: converter });
  if (signal.aborted) throw new AbortedError();

  const workers = new SupervisedWorkers(lifetime);
  await workers.add('orchestrator', () =>
    createOrchestratorWorker({
      connection: nativeConnection,
      namespace: 'default',
      client,
      dataConverter: converter,
      catalog: catalogLocation(),
      issuer: loadIssuerPublicKey(),
    }),
  );
  if (signal.aborted) throw new AbortedError();
  let gpuWorker: GpuWorkerHandle | undefined;
  if (options.worker)
    await workers.add('GPU worker', async () => {
      gpuWorker = await createGpuWorker({
        connection: nativeConnection,
        namespace: 'default',
        client,
        dataConverter: converter,
        host: hostName(),
        workDir: path.join(home, 'worker'),
        cpuSlots: options.cpuSlots,
        credential,
      });
      return gpuWorker;
    });
  if (signal.aborted) throw new AbortedError();
  // "Up" means a run submitted now is placed: the pool must hold this host's slots first.
  if (gpuWorker) await joined(() => gpuWorker!, lifetime);
  if (signal.aborted) throw new AbortedError();
  await ensureHealthSchedule(client);
  if (signal.aborted) throw new AbortedError();
  const codecEndpoint = await startDevCodecEndpoint(await payloadCodec(), server.uiUrl);
  lifetime.onStop(() => codecEndpoint.close());
  if (pointer) writeStackPointer({ ...pointer, codecEndpoint: codecEndpoint.endpoint });

  const clients = pointer
    ? `\`expctl\` from any directory of this user finds this stack (recorded in ${stackPointerPath()})`
    : `another stack is this user's default (${stackPointerPath()}): give this one's commands EXPCTL_HOME=${home}`;
  const slots = gpuWorker?.slots.map((slot) => `${slot.slotId} (${slot.acceleratorClass})`).join(', ');
  const remote = plan.advertised
    ? `
  Other hosts:      TEMPORAL_ADDRESS=${hostPort(plan.advertised, ports.grpcPort)} expctl worker   (Web UI http://${hostPort(plan.advertised, ports.uiPort)})
  Fleet remote:     EXPCTL_FLEET_REMOTE=${fleetRemote?.url} on hosts that submit (commits travel through it)`
    : `
  Other hosts:      none can connect (only this host's loopback): start with --listen ADDR to serve them`;
  console.log(`
expctl dev is up.
  Temporal Web UI:  ${server.uiUrl}
  Temporal gRPC:    ${server.address}
  Commands:         ${clients}${remote}
  Codec endpoint:   ${codecEndpoint.endpoint}
                    (payloads are encrypted: paste this into the Web UI's codec server setting to read them there)
  Orchestrator:     task queue expctl-control; health Schedule expctl-health every minute
  GPU worker:       ${gpuWorker ? `${gpuWorker.host} with ${slots}${cpuSlotNote(gpuWorker, options)}` : 'none here (--no-worker): GPU hosts join with `expctl worker`'}
  State:            ${home}
Press Ctrl-C to stop everything.
`);
  return { client };
}

/** How many CPU slots the local worker offers and why, when they are CPU slots. */
function cpuSlotNote(worker: GpuWorkerHandle, options: DevOptions): string {
  const cpu = worker.slots.filter((slot) => slot.acceleratorClass === 'cpu').length;
  if (cpu === 0) return '';
  const cores = os.availableParallelism();
  const why =
    options.cpuSlots !== undefined
      ? 'set by --cpu-slots'
      : `the default for ${cores} cores (half, at least ${MIN_DEFAULT_CPU_SLOTS}); --cpu-slots N changes it`;
  return `\n                    ${cpu} CPU slot${cpu === 1 ? '' : 's'}, so ${cpu} run${cpu === 1 ? '' : 's'} at once: ${why}`;
}

/**
 * Waits until the pool has the GPU worker's slots. A worker that fails is created anew by its
 * supervisor, so the wait moves to the current one; a refusal is the worker's to report.
 */
async function joined(current: () => GpuWorkerHandle, lifetime: StackLifetime): Promise<void> {
  const slow = setTimeout(() => log('expctl: waiting for the pool to register the GPU worker ...'), 10_000);
  try {
    while (!lifetime.stopped) {
      let recheck: NodeJS.Timeout | undefined;
      const done = await Promise.race([
        current()
          .registered()
          .then(
            () => true,
            () => true,
          ),
        new Promise<false>((resolve) => (recheck = setTimeout(() => resolve(false), 1000))),
      ]);
      clearTimeout(recheck);
      if (done) return;
    }
  } finally {
    clearTimeout(slow);
  }
}

/**
 * Restarts the server on the same database and ports each time it dies, with backoff, and gives
 * up (stopping the stack) only after MAX_SERVER_RESTARTS deaths within RESTART_WINDOW_MS. A server
 * that is alive but slow or frozen is never acted on: the workers' connections wait it out.
 */
async function superviseServer(
  first: DevServer,
  lifetime: StackLifetime,
  restart: () => Promise<DevServer>,
): Promise<void> {
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

type RunnableWorker = OrchestratorWorker | GpuWorkerHandle;

/**
 * The workers run until the stack stops. Their connections retry on their own across server
 * restarts and freezes; should a worker still end with an error, it is logged and created anew
 * rather than taking the stack down.
 */
class SupervisedWorkers {
  private readonly runs: Promise<void>[] = [];
  private readonly current = new Map<string, RunnableWorker>();

  constructor(private readonly lifetime: StackLifetime) {
    lifetime.onStop(() => this.shutdown());
  }

  async add(name: string, create: () => Promise<RunnableWorker>): Promise<void> {
    this.current.set(name, await create());
    this.runs.push(this.keepRunning(name, create));
  }

  private async keepRunning(name: string, create: () => Promise<RunnableWorker>): Promise<void> {
    for (let attempt = 1; !this.lifetime.stopped; attempt++) {
      try {
        await this.current.get(name)!.run();
        if (this.lifetime.stopped) return;
        log(`expctl: the ${name} stopped unexpectedly; starting it again ...`);
      } catch (error) {
        if (this.lifetime.stopped) return;
        log(`expctl: the ${name} failed (${(error as Error).message}); starting it again ...`);
      }
      if (!(await this.lifetime.sleep(Math.min(30_000, 1000 * attempt)))) return;
      try {
        this.current.set(name, await create());
      } catch (error) {
        log(`expctl: could not start the ${name} again yet: ${(error as Error).message}`);
      }
    }
  }

  private async shutdown(): Promise<void> {
    for (const worker of this.current.values()) {
      if ('slots' in worker) await worker.shutdown().catch(() => undefined);
      else if (worker.getState() === 'RUNNING') worker.shutdown();
    }
    await Promise.allSettled(this.runs);
  }
}
