import fs from 'node:fs/promises';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { createGpuWorker } from '../../gpu-worker/worker.js';
import { createOrchestratorWorker } from '../../orchestrator/worker.js';
import { installWorkerRuntime } from '../../shared/runtime.js';
import { catalogPath, devPorts, hostName, stateDir } from '../../shared/settings.js';
import { processAlive } from '../../shared/processes.js';
import { devInfoPath, readDevInfo, type DevStackInfo } from '../../temporal/connection.js';
import { startDevServer } from '../../temporal/dev-server.js';
import { ensureHealthSchedule } from '../../temporal/schedules.js';
import { ensureTemporalCli } from '../../temporal/temporal-cli.js';
import { runDemo } from '../demo.js';

export interface DevOptions {
  demo: boolean;
  cpuSlots?: number;
}

/**
 * `expctl dev` / `npm start`: the whole local stack in one process tree — Temporal dev server
 * (SQLite, Web UI), orchestrator worker, one GPU worker — until Ctrl-C stops all of it.
 */
export async function devCommand(options: DevOptions): Promise<void> {
  const home = stateDir();
  const running = readDevInfo();
  if (running && processAlive(running.pid)) {
    console.log(`expctl dev is already running (pid ${running.pid}) for ${home}`);
    console.log(`  Web UI: ${running.uiUrl}\n  gRPC:   ${running.address}`);
    console.log(`Stop it with Ctrl-C in its terminal or \`kill ${running.pid}\`.`);
    return;
  }
  await fs.mkdir(home, { recursive: true });
  const binary = await ensureTemporalCli();
  const ports = devPorts();
  console.error(`expctl: starting Temporal (state in ${path.join(home, 'temporal.db')}) ...`);
  const server = await startDevServer({
    binary,
    dbFile: path.join(home, 'temporal.db'),
    ip: ports.ip,
    grpcPort: ports.grpcPort,
    uiPort: ports.uiPort,
    logFile: path.join(home, 'logs', 'temporal.log'),
  });

  const info: DevStackInfo = { pid: process.pid, address: server.address, uiUrl: server.uiUrl, startedAt: new Date().toISOString() };
  await fs.writeFile(devInfoPath(), JSON.stringify(info, null, 2));

  installWorkerRuntime();
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const clientConnection = await Connection.connect({ address: server.address });
  const client = new Client({ connection: clientConnection, namespace: 'default' });
  const orchestrator = await createOrchestratorWorker({ connection: nativeConnection, namespace: 'default', client, catalogPath: catalogPath() });
  const gpuWorker = await createGpuWorker({
    connection: nativeConnection,
    namespace: 'default',
    client,
    host: hostName(),
    workDir: path.join(home, 'worker'),
    cpuSlots: options.cpuSlots,
  });
  const workersDone = Promise.all([orchestrator.run(), gpuWorker.run()]);
  await ensureHealthSchedule(client);

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      console.error('\nexpctl: stopping workers and the Temporal server ...');
      await gpuWorker.shutdown();
      if (orchestrator.getState() === 'RUNNING') orchestrator.shutdown();
      await workersDone.catch(() => undefined);
      await nativeConnection.close().catch(() => undefined);
      await clientConnection.close().catch(() => undefined);
      await server.stop();
      await fs.rm(devInfoPath(), { force: true });
      console.error('expctl: stopped; state kept for the next start.');
    })());
  process.once('SIGINT', () => void stop().then(() => process.exit(0)));
  process.once('SIGTERM', () => void stop().then(() => process.exit(0)));
  void server.exited.then(() => {
    if (!stopping) {
      console.error('expctl: the Temporal server exited unexpectedly; see .expctl/logs/temporal.log');
      void stop().then(() => process.exit(1));
    }
  });

  const slots = gpuWorker.slots.map((slot) => `${slot.slotId} (${slot.acceleratorClass})`).join(', ');
  console.log(`
expctl dev is up.
  Temporal Web UI:  ${server.uiUrl}
  Temporal gRPC:    ${server.address}   (other shells: TEMPORAL_ADDRESS=${server.address}, or run them in this directory)
  Orchestrator:     task queue expctl-control; health Schedule expctl-health every minute
  GPU worker:       ${gpuWorker.host} with ${slots}
  State:            ${home}
Press Ctrl-C to stop everything.
`);
  if (options.demo) {
    try {
      await runDemo(client, { home });
    } catch (error) {
      console.error(`expctl: the demo failed: ${(error as Error).message}`);
    }
  }
  await workersDone;
}
