import type { Client } from '@temporalio/client';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { requestLeaseSignal } from '../../src/workflows/definitions.js';
import { waitFor } from './wait.js';

/** How many of the pool's current run's workflow tasks have failed. */
export async function failedPoolTasks(client: Client): Promise<number> {
  const history = await client.workflow.getHandle(POOL_WORKFLOW_ID).fetchHistory();
  return (history.events ?? []).filter((event) => event.workflowTaskFailedEventAttributes).length;
}

/**
 * Stalls the pool as a keyring holder's malformed signal does: encrypted, so the codec lets it
 * through, but not a request, so its handler throws and every retry of the pool's workflow task
 * fails on it again. Returns once a task has failed on it, with the stalled run's id.
 */
export async function stallPool(client: Client): Promise<string> {
  const pool = client.workflow.getHandle(POOL_WORKFLOW_ID);
  const runId = (await pool.describe()).runId;
  const before = await failedPoolTasks(client);
  await pool.signal(requestLeaseSignal, null as never);
  await waitFor(async () => (await failedPoolTasks(client)) > before, 30_000);
  return runId;
}
