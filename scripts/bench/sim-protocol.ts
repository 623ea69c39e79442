/**
 * How a simulated host speaks to the pool: exactly as `expctl worker` does (src/roots/gpu-worker.ts),
 * through the same signed registration and membership code, and kept alive by the same
 * keepHostAlive activity on its own host queue (one activity-only Worker per simulated host),
 * asking the pool about its GPUs' leases in the worker's rounds as if every GPU trained, minus the
 * processes it would train. The bench's host-side protocol lives here only, so a change
 * of protocol changes this one file.
 */
import crypto from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { Worker, type NativeConnection } from '@temporalio/worker';
import { createLivenessActivities } from '../../src/activities/liveness.js';
import { DEFAULT_POOL_HEARTBEAT_MS, type Slot } from '../../src/domain/fleet.js';
import { leaseCheckIntervalMs, leaseRoundMs } from '../../src/domain/limits.js';
import { leaseRounds, leasesHeldOn } from '../../src/gpu-worker/lease-rounds.js';
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
  host: string;
  gpus: number;
  datasetsDir: string;
  log: (line: string) => void;
}): Promise<SimHost> {
  const { client, host } = options;
  const heartbeatMs = DEFAULT_POOL_HEARTBEAT_MS;
  const hostQueue = hostTaskQueue(host);
  const incarnation = crypto.randomUUID();
  const stopping = new AbortController();
  // The host queue's only work here is liveness: keepHostAlive, and the probe after a missed heartbeat.
  const liveness = await Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    dataConverter: options.dataConverter,
    taskQueue: hostQueue,
    activities: createLivenessActivities({ host, incarnation, heartbeatMs, stopping: stopping.signal }),
    maxConcurrentActivityTaskExecutions: 2,
    maxConcurrentActivityTaskPolls: 1,
    maxHeartbeatThrottleInterval: heartbeatMs,
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
  // Every GPU's run confirms its lease as a worker's does at the default fencing time (the answer
  // is no: the simulated runs' leases are not known here; the question costs the pool the same).
  const checkIntervalMs = leaseCheckIntervalMs();
  const rounds = leaseRounds(leasesHeldOn(client), leaseRoundMs(checkIntervalMs));
  let confirming: NodeJS.Timeout | undefined;
  const confirmLeases = () => {
    for (const slot of slots) void rounds.held(slot.slotId, 'simulated').catch(() => undefined);
  };
  return {
    host,
    async join() {
      await membership.register();
      await membership.accepted();
      membership.watchPool();
      confirming = setInterval(confirmLeases, checkIntervalMs - rounds.roundMs);
    },
    async leave() {
      clearInterval(confirming);
      await membership.leave();
      stopping.abort();
      liveness.shutdown();
      await running;
    },
  };
}
