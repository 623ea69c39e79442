import type { Worker } from '@temporalio/worker';
import type { Slot } from '../domain/fleet.js';
import type { DeferredCleanup } from './deferred-cleanup.js';
import type { InFlightCalls } from './in-flight.js';
import type { PoolMembership } from './pool-membership.js';

export interface GpuWorkerHandle {
  host: string;
  slots: Slot[];
  /** Resolves when every poller has stopped. */
  run(): Promise<void>;
  /** Resolves once the pool has this host online (after run() started); rejects if the pool refused it. */
  registered(): Promise<void>;
  shutdown(): Promise<void>;
}

/** Runs the workers and the pool membership as one, and stops them as one. */
export function gpuWorkerHandle(parts: {
  host: string;
  slots: Slot[];
  workers: Worker[];
  membership: PoolMembership;
  cleanup: DeferredCleanup;
  stopKeeping: () => void;
  /** Ends the host's keepHostAlive activity (it says the host is leaving). */
  liveness: AbortController;
  /** Server calls started beside the activities, waited for before the worker says it has stopped. */
  serverCalls: InFlightCalls;
  releaseClaim: () => Promise<void>;
}): GpuWorkerHandle {
  const { workers, membership } = parts;
  const stopWorkers = () => {
    for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  let registration: Promise<void> | undefined;
  let markRegistered = () => {};
  const started = new Promise<void>((resolve) => (markRegistered = resolve));
  return {
    host: parts.host,
    slots: parts.slots,
    async registered() {
      await started;
      await registration;
    },
    async run() {
      const running = Promise.all(workers.map((worker) => worker.run()));
      // Pollers first, then registration: the pool only hands out slots somebody is polling.
      await membership.register();
      membership.watchPool();
      // A refused registration stops the worker with the pool's reason.
      let refusal: Error | undefined;
      registration = membership.accepted();
      markRegistered();
      void registration.catch((error: Error) => {
        refusal = error;
        membership.stopWatching();
        stopWorkers();
      });
      await running;
      await parts.serverCalls.settled();
      // Worktrees of finished runs still being removed: a stopped worker leaves none half-deleted.
      await parts.cleanup.drain();
      await parts.releaseClaim();
      if (refusal) throw refusal;
    },
    async shutdown() {
      parts.stopKeeping();
      await membership.leave();
      parts.liveness.abort();
      stopWorkers();
      await parts.releaseClaim();
    },
  };
}
