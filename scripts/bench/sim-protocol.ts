/**
 * How a simulated host speaks to the pool: exactly as `expctl worker` does (src/roots/gpu-worker.ts),
 * through the same signed registration and membership code, and kept alive by the same
 * keepHostAlive activity on its own host queue (one activity-only Worker per simulated host), whose
 * heartbeats the server acknowledges. Those confirm the leases of the runs the host's train tasks
 * follow, so a healthy host asks the pool nothing about them; only the processes it would train are
 * missing. The bench's host-side protocol lives here only, so a change of protocol changes this one file.
 */
import crypto from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { Worker, type NativeConnection } from '@temporalio/worker';
import { createLivenessActivities } from '../../src/activities/liveness.js';
import { DEFAULT_POOL_HEARTBEAT_MS, type Slot } from '../../src/domain/fleet.js';
import { livenessPeriodMs } from '../../src/domain/limits.js';
import { HostConfirmations, type AcknowledgedHeartbeat } from '../../src/gpu-worker/host-confirmations.js';
import { hostRegistration, PoolMembership } from '../../src/gpu-worker/pool-membership.js';
import type { Credential } from '../../src/security/credentials.js';
import { hostTaskQueue, slotTaskQueue } from '../../src/shared/constants.js';

/** The runtime tag every simulated GPU carries, so that only the simulation's runs land on them. */
export const SIM_RUNTIME_TAG = 'bench-sim';

/** `gpus` fake A100s of `host`, as discovery would report them. */
export function simSlots(host: string, gpus: number): Slot[] {
  return Array.from({ length: gpus }, (_, index) => ({
    slotId: `${host}/gpu${index}`,
    host,
    index,
    uuid: `GPU-sim-${host}-${index}`,
    name: 'NVIDIA A100-SXM4-80GB',
    acceleratorClass: 'a100',
    memoryMb: 81920,
    taskQueue: slotTaskQueue(host, `gpu${index}`),
    runtimeTags: [SIM_RUNTIME_TAG],
  }));
}

/** One simulated host, joined to the pool and keeping itself alive as a worker does. */
export interface SimHost {
  readonly host: string;
  /** Registers, waits until the pool has it online, and starts keeping it alive. */
  join(): Promise<void>;
  /** Says goodbye, as a worker that shuts down. */
  leave(): Promise<void>;
}

export async function simHost(options: {
  client: Client;
  /** The process's worker connection and payload converter: the host's liveness Worker polls through them. */
  connection: NativeConnection;
  namespace: string;
  dataConverter: DataConverter;
  credential: Credential;
  /** The process's acknowledged heartbeats (one client on its worker connection, shared by its hosts). */
  acknowledgedHeartbeat: AcknowledgedHeartbeat;
  host: string;
  gpus: number;
  datasetsDir: string;
  log: (line: string) => void;
}): Promise<SimHost> {
  const { client, host } = options;
  const heartbeatMs = DEFAULT_POOL_HEARTBEAT_MS;
  const livenessMs = livenessPeriodMs(heartbeatMs);
  const hostQueue = hostTaskQueue(host);
  const incarnation = crypto.randomUUID();
  const stopping = new AbortController();
  const confirmations = new HostConfirmations(livenessMs);
  // The host queue's only work here is liveness: keepHostAlive, and the probe after a missed heartbeat.
  const liveness = await Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    dataConverter: options.dataConverter,
    taskQueue: hostQueue,
    activities: createLivenessActivities({
      host,
      incarnation,
      heartbeatMs: livenessMs,
      stopping: stopping.signal,
      acknowledged: { heartbeat: options.acknowledgedHeartbeat, confirmations },
    }),
    maxConcurrentActivityTaskExecutions: 2,
    maxConcurrentActivityTaskPolls: 1,
    maxHeartbeatThrottleInterval: livenessMs,
  });
  const running = liveness.run();
  const slots = simSlots(host, options.gpus);
  const membership = new PoolMembership(
    {
      client,
      credential: options.credential,
      log: options.log,
      heartbeatMs,
      liveLeases: () => [],
      hostConfirmed: () => confirmations.acceptedNow(),
    },
    await hostRegistration({
      host,
      hostQueue,
      slots,
      datasetsDir: options.datasetsDir,
      liveRuns: [],
      heartbeatMs,
      incarnation,
    }),
  );
  return {
    host,
    async join() {
      await membership.register();
      await membership.accepted();
      membership.watchPool();
    },
    async leave() {
      await membership.leave();
      stopping.abort();
      liveness.shutdown();
      await running;
    },
  };
}
