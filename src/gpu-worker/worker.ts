import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createHostActivities } from '../activities/host.js';
import { createRunStatusActivities } from '../activities/run-status.js';
import { createTrainingActivities } from '../activities/training.js';
import type { HostRegistration, Slot } from '../domain/fleet.js';
import { CONTROL_TASK_QUEUE, hostTaskQueue, POOL_WORKFLOW_ID } from '../shared/constants.js';
import { deregisterHostSignal, registerHostSignal } from '../workflows/definitions.js';
import { poolWorkflow } from '../workflows/pool.js';
import { discoverSlots, type DiscoveryOptions } from './discover.js';
import { reconcileOrphans } from './reconcile.js';
import { softwareVersions } from './software.js';

export interface GpuWorkerOptions extends DiscoveryOptions {
  connection: NativeConnection;
  namespace: string;
  client: Client;
  workDir: string;
  datasetsDir?: string;
  poolHeartbeatMs?: number;
  trainingHeartbeatMs?: number;
  /** After SIGTERM, how long a training process group gets before SIGKILL. */
  killAfterMs?: number;
  log?: (line: string) => void;
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
  await fs.mkdir(workDir, { recursive: true });
  for (const orphan of await reconcileOrphans(workDir)) log(`expctl worker: stopped orphaned training of ${orphan.experimentId} (pid ${orphan.pid})`);

  const discovery = await discoverSlots(options);
  const datasetsDir = options.datasetsDir ?? path.join(workDir, 'datasets');
  const host = options.host;
  const hostQueue = hostTaskQueue(host);
  const base = { connection: options.connection, namespace: options.namespace, shutdownGraceTime: '15s' };
  const workers: Worker[] = [
    await Worker.create({
      ...base,
      taskQueue: hostQueue,
      activities: { ...createHostActivities({ host, workDir, slots: discovery.slots, datasetsDir }), ...createRunStatusActivities({ workDir }) },
      maxConcurrentActivityTaskExecutions: 8,
    }),
  ];
  for (const slot of discovery.slots) {
    workers.push(
      await Worker.create({
        ...base,
        taskQueue: slot.taskQueue,
        activities: createTrainingActivities({ slot, workDir, heartbeatIntervalMs: options.trainingHeartbeatMs, killAfterMs: options.killAfterMs }),
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
  };
  let heartbeat: NodeJS.Timeout | undefined;
  const pool = options.client.workflow.getHandle(POOL_WORKFLOW_ID);

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
      heartbeat = setInterval(() => {
        void pool.signal(registerHostSignal, registration).catch((error: Error) => log(`expctl worker: pool heartbeat failed: ${error.message}`));
      }, options.poolHeartbeatMs ?? 10_000);
      await running;
    },
    async shutdown() {
      clearInterval(heartbeat);
      await pool.signal(deregisterHostSignal, { host }).catch(() => undefined);
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
    },
  };
}
