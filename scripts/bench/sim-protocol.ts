/**
 * How a simulated host speaks to the pool: exactly as `expctl worker` does (src/roots/gpu-worker.ts),
 * through the same signed registration and membership code, minus the processes it would train.
 * The bench's host-side protocol lives here only, so a change of protocol changes this one file.
 */
import type { Client } from '@temporalio/client';
import { DEFAULT_POOL_HEARTBEAT_MS, type Slot } from '../../src/domain/fleet.js';
import { hostRegistration, PoolMembership } from '../../src/gpu-worker/pool-membership.js';
import type { Credential } from '../../src/security/credentials.js';
import { hostTaskQueue, POOL_TASK_QUEUE, POOL_WORKFLOW_ID, slotTaskQueue } from '../../src/shared/constants.js';
import { registerHostSignal } from '../../src/workflows/definitions.js';

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
  credential: Credential;
  host: string;
  gpus: number;
  datasetsDir: string;
  log: (line: string) => void;
}): Promise<SimHost> {
  const { client, host } = options;
  const heartbeatMs = DEFAULT_POOL_HEARTBEAT_MS;
  const membership = new PoolMembership(
    {
      client,
      credential: options.credential,
      log: options.log,
      heartbeatMs,
      startPool: (registration) =>
        client.workflow.signalWithStart('poolWorkflow', {
          workflowId: POOL_WORKFLOW_ID,
          taskQueue: POOL_TASK_QUEUE,
          args: [],
          signal: registerHostSignal,
          signalArgs: [registration],
        }),
      liveLeases: () => [],
    },
    await hostRegistration({
      host,
      hostQueue: hostTaskQueue(host),
      slots: simSlots(host, options.gpus),
      datasetsDir: options.datasetsDir,
      liveRuns: [],
      heartbeatMs,
    }),
  );
  return {
    host,
    async join() {
      await membership.register();
      await membership.accepted();
      membership.startHeartbeat();
    },
    leave: () => membership.leave(),
  };
}
