import fs from 'node:fs/promises';
import os from 'node:os';
import { ensurePrivateDir } from '../../security/files.js';
import { keySource } from '../../security/keyring.js';
import { catalogLocation, devPorts, stateDir } from '../../shared/settings.js';
import { removeStackPointer, writeStackPointer, type StackPointer } from '../../shared/stack.js';
import { devInfoPath, readDevInfo } from '../../temporal/connection.js';
import { AbortedError } from '../../temporal/dev-server.js';
import { identityOf } from '../../temporal/pid-file.js';
import { listenPlan, type ListenPlan } from '../../temporal/listen.js';
import { CatalogView } from '../../client/catalog.js';
import { StackLifetime } from '../../dev-stack/lifetime.js';
import { acquireStateLock } from '../../dev-stack/state-lock.js';
import { startDevStack } from '../../roots/dev.js';
import { CliError } from '../output.js';
import { runDemo } from '../demo.js';
import { catalogRevocations } from './fleet-remote.js';

export interface DevOptions {
  demo: boolean;
  /** false with --no-worker: the control plane only (server, orchestrator); GPU hosts join with `expctl worker`. */
  worker: boolean;
  cpuSlots?: number;
  /** --listen ADDR (else EXPCTL_TEMPORAL_IP): the address other hosts reach Temporal on. */
  listen?: string;
}

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
  const stack = lifetime.startup(() =>
    startDevStack(
      {
        worker: options.worker,
        cpuSlots: options.cpuSlots,
        plan,
        home,
        pointer: isDefault ? pointer : undefined,
        isRevoked: catalogRevocations(),
      },
      lifetime,
    ),
  );
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
