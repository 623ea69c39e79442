import { ApplicationFailure, CancelledFailure, Context } from '@temporalio/activity';
import { activityOver, type AcknowledgedHeartbeat, type HostConfirmations } from '../gpu-worker/host-confirmations.js';
import { NOT_THIS_INCARNATION } from '../workflows/definitions.js';

/** Which host incarnation a liveness question is about. */
export interface IncarnationRef {
  host: string;
  incarnation: string;
}

/** Sent with every liveness heartbeat: the worker's clock, so a server that was away can be told apart. */
export interface LivenessBeat {
  at: number;
}

export interface LivenessDeps {
  host: string;
  /** This worker process's incarnation, as it registered it. */
  incarnation: string;
  /** How often the long activity heartbeats (the host's registered heartbeatMs). */
  heartbeatMs: number;
  /** Aborted when the worker shuts down: the activity then ends, saying the host is leaving. */
  stopping: AbortSignal;
  /**
   * Heartbeats sent by the worker itself, each awaited until the server accepts it (the SDK's own
   * heartbeats are never acknowledged), and the confirmations they make (host-confirmations.ts).
   * Absent: the SDK heartbeats, and the host's runs confirm their leases with the pool.
   */
  acknowledged?: { heartbeat: AcknowledgedHeartbeat; confirmations: HostConfirmations };
}

/**
 * A host's liveness, answered on its host queue: one long activity that heartbeats while the
 * worker lives (activity heartbeats write no history), and a short probe. Both refuse an
 * incarnation that is not this worker's: a restarted worker must not keep its predecessor alive.
 * One factory per host, so a process that hosts many simulated hosts serves each on its own queue
 * (a Worker per host queue, with maxHeartbeatThrottleInterval = heartbeatMs as the GPU worker has:
 * the SDK otherwise holds heartbeats for 0.8 of the limit, leaving little margin).
 */
export function createLivenessActivities(deps: LivenessDeps) {
  const refuseOther = (ref: IncarnationRef): void => {
    if (ref.host !== deps.host || ref.incarnation !== deps.incarnation)
      throw ApplicationFailure.nonRetryable(
        `this worker is ${deps.host} incarnation ${deps.incarnation}, not ${ref.host} incarnation ${ref.incarnation}`,
        NOT_THIS_INCARNATION,
      );
  };
  const stopped = new Promise<void>((resolve) => {
    if (deps.stopping.aborted) resolve();
    else deps.stopping.addEventListener('abort', () => resolve(), { once: true });
  });
  /** The loop with acknowledged heartbeats: each accepted one confirms the host's followed runs. */
  const keepAcknowledged = async ({
    heartbeat,
    confirmations,
  }: NonNullable<LivenessDeps['acknowledged']>): Promise<{ leaving: true }> => {
    const context = Context.current();
    const epoch = confirmations.begin();
    try {
      while (!deps.stopping.aborted) {
        const at = Date.now();
        try {
          await heartbeat(context.info.taskToken, { at } satisfies LivenessBeat);
          confirmations.confirmed(epoch, at);
        } catch (error) {
          // Not found or canceled: the liveness workflow is done with this activity. Anything else: no answer this time.
          if (activityOver(error))
            throw new CancelledFailure(`liveness heartbeat refused: ${(error as Error).message}`);
        }
        await Promise.race([context.sleep(deps.heartbeatMs), stopped]);
      }
      return { leaving: true };
    } finally {
      confirmations.end(epoch);
    }
  };
  return {
    /** Heartbeats every heartbeatMs until the worker stops (then `leaving`) or the server cancels it. */
    async keepHostAlive(ref: IncarnationRef): Promise<{ leaving: true }> {
      refuseOther(ref);
      const context = Context.current();
      if (deps.acknowledged) return keepAcknowledged(deps.acknowledged);
      while (!deps.stopping.aborted) {
        context.heartbeat({ at: Date.now() } satisfies LivenessBeat);
        // sleep() rejects when the activity is cancelled (a new limit, or timed out at the server).
        await Promise.race([context.sleep(deps.heartbeatMs), stopped]);
      }
      return { leaving: true };
    },
    /** Answers at once: the host's worker of this incarnation is here. */
    async probeHost(ref: IncarnationRef): Promise<IncarnationRef> {
      refuseOther(ref);
      return ref;
    },
  };
}
