import crypto from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { StoreGcReport } from '../activities/store.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { storeGcWorkflow } from '../workflows/store-gc.js';

/** Asks the orchestrator to collect the fleet store's garbage (only its activities delete) and waits for the report. */
export function collectStoreGarbage(
  client: Client,
  request: { olderThanMs: number; dryRun: boolean },
): Promise<StoreGcReport> {
  return client.workflow.execute(storeGcWorkflow, {
    workflowId: `store-gc-${crypto.randomBytes(6).toString('hex')}`,
    taskQueue: CONTROL_TASK_QUEUE,
    args: [request],
  });
}
