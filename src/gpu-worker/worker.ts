import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createHostActivities } from '../activities/host.js';
import { createRunStatusActivities } from '../activities/run-status.js';
import { createTrainingActivities } from '../activities/training.js';
import type { HostRegistration, Slot } from '../domain/fleet.js';
import { CONTROL_TASK_QUEUE, hostTaskQueue, POOL_WORKFLOW_ID } from '../shared/constants.js';
import { deregisterHostSignal, leaseHeldQuery, registerHostSignal } from '../workflows/definitions.js';
import { poolWorkflow } from '../workflows/pool.js';
import { discoverSlots, type DiscoveryOptions } from './discover.js';
import { reconcileRuns, touchAttached } from './reconcile.js';
import { runFiles } from './run-files.js';
import { processAlive } from '../shared/processes.js';
import { ensurePrivateDir } from '../security/files.js';
import { softwareVersions } from './software.js';

export interface GpuWorkerOptions extends DiscoveryOptions {
  connection: NativeConnection;
  namespace: string;
  client: Client;
  /** Payload encryption: connection.ts `dataConverter(env)`, the same as the client's. */
  dataConverter: DataConverter;
  workDir: string;
  datasetsDir?: string;
  poolHeartbeatMs?: number;
  trainingHeartbeatMs?: number;
  /** After SIGTERM, how long a training process group gets before SIGKILL. */
  killAfterMs?: number;
  log?: (line: string) => void;
  /** How long a supervisor keeps a run going with no worker attached (default 60 s). */
  orphanGraceMs?: number;
}

export interface GpuWorkerHandle {
  host: string;
  slots: Slot[];
  /** Resolves when every poller has stopped. */
  run(): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * One process per host: a worker per slot queue with exactly one activity slot (no two experiments
 * on one GPU), a host queue for validation and logs, and a heartbeat to the pool.
 */
export async function createGpuWorker(options: GpuWorkerOptions): Promise<GpuWorkerHandle> {
  const log = options.log ?? ((line: string) => console.error(line));
  const workDir = path.resolve(options.workDir);
  await ensurePrivateDir(workDir);
  const reconciled = await reconcileRuns(workDir);
  for (const orphan of reconciled.stopped)
    log(`expctl worker: stopped what was left of ${orphan.experimentId} (supervisor ${orphan.pid})`);
  for (const run of reconciled.kept)
    log(`expctl worker: kept ${run.experimentId} (supervisor ${run.pid}) for its experiment to re-attach`);

  const discovery = await discoverSlots(options);
  const datasetsDir = options.datasetsDir ?? path.join(workDir, 'datasets');
  const host = options.host;
  const hostQueue = hostTaskQueue(host);
  const pool = options.client.workflow.getHandle(POOL_WORKFLOW_ID);
  const leaseHeld = (slotId: string, leaseId: string) => pool.query(leaseHeldQuery, { slotId, leaseId });
  const base = {
    connection: options.connection,
    namespace: options.namespace,
    dataConverter: options.dataConverter,
    shutdownGraceTime: '15s',
  };
  const workers: Worker[] = [
    await Worker.create({
      ...base,
      taskQueue: hostQueue,
      activities: {
        ...createHostActivities({ host, workDir, slots: discovery.slots, datasetsDir }),
        ...createRunStatusActivities({ workDir }),
      },
      maxConcurrentActivityTaskExecutions: 8,
    }),
  ];
  for (const slot of discovery.slots) {
    workers.push(
      await Worker.create({
        ...base,
        taskQueue: slot.taskQueue,
        activities: createTrainingActivities({
          slot,
          workDir,
          heartbeatIntervalMs: options.trainingHeartbeatMs,
          killAfterMs: options.killAfterMs,
          orphanGraceMs: options.orphanGraceMs,
          leaseHeld,
        }),
        maxConcurrentActivityTaskExecutions: 1,
        // Heartbeats carry progress and bring cancellation back: do not let the SDK hold them for long.
        maxHeartbeatThrottleInterval: '2s',
        defaultHeartbeatThrottleInterval: '2s',
      }),
    );
  }

  const registration: HostRegistration = {
    host,
    hostQueue,
    slots: discovery.slots,
    driverVersion: discovery.driverVersion,
    datasets: await fs.readdir(datasetsDir).catch(() => []),
    software: await softwareVersions(),
    registeredAt: Date.now(),
    incarnation: crypto.randomUUID(),
    // The pool keeps these runs' leases across the restart: their experiments re-attach to them.
    liveRuns: reconciled.kept.map((run) => run.experimentId),
  };
  let heartbeat: NodeJS.Timeout | undefined;
  let heartbeatInFlight: Promise<unknown> | undefined;
  // Kept runs stay attached until their experiment adopts them (the adopting activity touches them too).
  const keepAttached = setInterval(() => {
    for (const run of reconciled.kept) {
      if (processAlive(run.pid)) void touchAttached(runFiles(workDir, run.experimentId).attached);
    }
  }, 2000);
  keepAttached.unref();

  return {
    host,
    slots: discovery.slots,
    async run() {
      const running = Promise.all(workers.map((worker) => worker.run()));
      // Pollers first, then registration: the pool only hands out slots somebody is polling.
      await options.client.workflow.signalWithStart(poolWorkflow, {
        workflowId: POOL_WORKFLOW_ID,
        taskQueue: CONTROL_TASK_QUEUE,
        args: [undefined],
        signal: registerHostSignal,
        signalArgs: [registration],
      });
      // The heartbeat is the registration itself: a pool that declared this host offline (or lost
      // its state) takes it back only through a registration, never through a bare heartbeat.
      // One heartbeat in flight at a time: during a server outage they would pile up, each retrying.
      heartbeat = setInterval(() => {
        if (heartbeatInFlight) return;
        heartbeatInFlight = pool
          .signal(registerHostSignal, registration)
          .catch((error: Error) => log(`expctl worker: pool heartbeat failed: ${error.message}`))
          .finally(() => (heartbeatInFlight = undefined));
      }, options.poolHeartbeatMs ?? 10_000);
      await running;
    },
    async shutdown() {
      clearInterval(heartbeat);
      clearInterval(keepAttached);
      await heartbeatInFlight;
      await pool.signal(deregisterHostSignal, { host }).catch(() => undefined);
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
    },
  };
}
