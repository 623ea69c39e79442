import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { POOL_TASK_QUEUE, POOL_WORKFLOW_ID, POOL_WORKFLOW_TASK_TIMEOUT } from '../shared/constants.js';
import { poolStateQuery, type PoolSnapshot } from '../workflows/definitions.js';
import type { poolWorkflow } from '../workflows/pool.js';
import { rebuiltPool } from '../workflows/pool-state.js';

/** How often the orchestrator looks for a pool that is gone. */
export const POOL_CHECK_MS = 5_000;
/** How long it waits for the ended run's last state (a replay of its history). */
const LAST_STATE_DEADLINE_MS = 15_000;

/**
 * The orchestrator's side of a pool that heals: a pool that was ended (terminated by hand, failed,
 * timed out) is started again from the ended run's last state, so its hosts, leases and queue
 * carry over and no restart is needed. A pool that never existed is left to the first worker.
 * Workers do the same when they next look at the pool (signal-with-start): whichever comes first starts it,
 * the other finds it running.
 */
export function superviseThePool(options: { client: Client; log: (line: string) => void; everyMs?: number }): {
  stop(): void;
} {
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void healPool(options.client, options.log)
      .catch((error: Error) => options.log(`expctl orchestrator: could not check the pool: ${error.message}`))
      .finally(() => (checking = false));
  }, options.everyMs ?? POOL_CHECK_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** Starts the pool again where its latest run has ended; returns whether it did. */
export async function healPool(client: Client, log: (line: string) => void): Promise<boolean> {
  const handle = client.workflow.getHandle(POOL_WORKFLOW_ID);
  let ended: { runId: string; status: string };
  try {
    const description = await handle.describe();
    ended = { runId: description.runId, status: description.status.name };
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return false;
    throw error;
  }
  if (ended.status === 'RUNNING' || ended.status === 'CONTINUED_AS_NEW') return false;
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
    if (error instanceof WorkflowExecutionAlreadyStartedError) return false;
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
  return true;
}

/** The ended run's last state, read by replaying its history; undefined where that fails. */
async function lastState(client: Client, runId: string): Promise<PoolSnapshot | undefined> {
  return client
    .withDeadline(Date.now() + LAST_STATE_DEADLINE_MS, () =>
      client.workflow.getHandle(POOL_WORKFLOW_ID, runId).query(poolStateQuery),
    )
    .catch(() => undefined);
}
