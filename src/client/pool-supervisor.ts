import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowExecutionDescription,
} from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { POOL_TASK_QUEUE, POOL_WORKFLOW_ID, POOL_WORKFLOW_TASK_TIMEOUT } from '../shared/constants.js';
import { poolStateQuery, type PoolSnapshot } from '../workflows/definitions.js';
import type { poolWorkflow } from '../workflows/pool.js';
import { rebuiltPool } from '../workflows/pool-state.js';
import { PoolRepairError, repairPool } from './pool-repair.js';
import { safeText } from '../shared/safe-text.js';

/** How often the orchestrator looks for a pool that is gone. */
export const POOL_CHECK_MS = 5_000;
/** How long it waits for the ended run's last state (a replay of its history). */
const LAST_STATE_DEADLINE_MS = 15_000;

/**
 * The orchestrator's side of a pool that heals: a pool that was ended (terminated by hand, failed,
 * timed out) is started again from the ended run's last state, so its hosts, leases and queue
 * carry over and no restart is needed. A pool that never existed is left to the first worker.
 * Workers do the same when they next look at the pool (signal-with-start): whichever comes first starts it,
 * the other finds it running. A pool whose workflow task keeps failing (a stall) is repaired after
 * `stallRepairMs`, as `expctl pool repair` would; one the repair cannot un-stall is ended, and so
 * started again.
 */
export function superviseThePool(options: {
  client: Client;
  log: (line: string) => void;
  everyMs?: number;
  /** Reads the stalled run's messages (the repair drops those it cannot read). */
  dataConverter: DataConverter;
  /** How long a stall may last before the repair; null: never (an operator repairs it). */
  stallRepairMs: number | null;
}): {
  stop(): void;
} {
  let checking = false;
  const stalls = new StallWatch(options.stallRepairMs);
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void lookAtPool(options.client, options.dataConverter, options.log, stalls)
      .catch((error: Error) => options.log(`expctl orchestrator: could not check the pool: ${error.message}`))
      .finally(() => (checking = false));
  }, options.everyMs ?? POOL_CHECK_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/**
 * When the pool's current run started stalling: its workflow task is on a retry (attempt 2 or more)
 * at each look. A task that times out once under load and then completes is no stall.
 */
export class StallWatch {
  private run: string | null = null;
  private since = 0;

  constructor(private readonly repairAfterMs: number | null) {}

  /** Whether the run has stalled long enough to repair, given this look. */
  due(runId: string, failingAttempt: boolean, now: number): boolean {
    if (!failingAttempt || this.repairAfterMs === null) {
      this.run = null;
      return false;
    }
    if (this.run !== runId) {
      this.run = runId;
      this.since = now;
    }
    return now - this.since >= this.repairAfterMs;
  }

  /** A repair was made (or the run ended): the next stall counts from its own start. */
  reset(): void {
    this.run = null;
  }
}

/** One look at the pool (one describe): an ended pool is started again, a stalled one repaired when due. */
async function lookAtPool(
  client: Client,
  dataConverter: DataConverter,
  log: (line: string) => void,
  stalls: StallWatch,
): Promise<void> {
  let description: WorkflowExecutionDescription;
  try {
    description = await client.workflow.getHandle(POOL_WORKFLOW_ID).describe();
  } catch (error) {
    // A pool that never existed is left to the first worker.
    if (error instanceof WorkflowNotFoundError) return;
    throw error;
  }
  const status = description.status.name;
  if (status === 'RUNNING') return repairIfStalled(client, dataConverter, log, stalls, description);
  if (status !== 'CONTINUED_AS_NEW') await startAgain(client, log, { runId: description.runId, status });
}

/**
 * Repairs a pool that has stalled for long enough: the same repair as `expctl pool repair`. One
 * the repair cannot un-stall (the task fails with no message given back: a fault in the pool's own
 * history, such as a replay that no longer matches it) is ended, so the next look starts it again.
 */
async function repairIfStalled(
  client: Client,
  dataConverter: DataConverter,
  log: (line: string) => void,
  stalls: StallWatch,
  description: WorkflowExecutionDescription,
): Promise<void> {
  const attempt = description.raw.pendingWorkflowTask?.attempt ?? 0;
  if (!stalls.due(description.runId, attempt >= 2, Date.now())) return;
  stalls.reset();
  try {
    const repair = await repairPool(client, dataConverter);
    if (!repair.stalled) return;
    log(
      `expctl orchestrator: the pool's workflow task kept failing (${safeText(repair.failure ?? '')}); repaired it: reset to event ` +
        `${repair.resetToEventId}, ${repair.resent} message(s) given back, ${repair.dropped.length} dropped` +
        repair.dropped
          // Named by whoever sent them: made safe for the operator's terminal, as `expctl pool repair` does.
          .map(
            (d) =>
              `\n  dropped ${safeText(d.signal)} (event ${d.eventId}, from ${safeText(d.sentBy ?? 'unknown')}): ${safeText(d.reason)}`,
          )
          .join(''),
    );
  } catch (error) {
    if (!(error instanceof PoolRepairError)) throw error;
    const reason = `its workflow task kept failing and a repair could not un-stall it: ${error.message}`;
    await client.workflow
      .getHandle(POOL_WORKFLOW_ID)
      .terminate(reason)
      .catch(() => undefined); // ended meanwhile: the next look starts it again all the same
    log(`expctl orchestrator: ended the pool (${reason}); it is started again at the next look`);
  }
}

/** Starts the pool again from the last state of its ended run (empty where that cannot be read). */
async function startAgain(
  client: Client,
  log: (line: string) => void,
  ended: { runId: string; status: string },
): Promise<void> {
  const last = await lastState(client, ended.runId);
  const carried = last ? rebuiltPool(last, Date.now()) : undefined;
  try {
    await client.workflow.start<typeof poolWorkflow>('poolWorkflow', {
      workflowId: POOL_WORKFLOW_ID,
      taskQueue: POOL_TASK_QUEUE,
      workflowTaskTimeout: POOL_WORKFLOW_TASK_TIMEOUT,
      args: carried ? [carried] : [],
    });
  } catch (error) {
    // A worker started it a moment ago: that run stands.
    if (error instanceof WorkflowExecutionAlreadyStartedError) return;
    throw error;
  }
  const leases = carried?.slots?.filter((entry) => entry.lease !== null).length ?? 0;
  const hosts = Object.keys(carried?.hosts ?? {}).length;
  log(
    `expctl orchestrator: the pool was ${ended.status.toLowerCase()}; started it again ` +
      (carried
        ? `with its last state (${hosts} host(s), ${leases} lease(s))`
        : 'empty (its last state could not be read; workers register again when they next look at it)'),
  );
}

/** The ended run's last state, read by replaying its history; undefined where that fails. */
async function lastState(client: Client, runId: string): Promise<PoolSnapshot | undefined> {
  return client
    .withDeadline(Date.now() + LAST_STATE_DEADLINE_MS, () =>
      client.workflow.getHandle(POOL_WORKFLOW_ID, runId).query(poolStateQuery),
    )
    .catch(() => undefined);
}
