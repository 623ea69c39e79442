import { proxyActivities } from '@temporalio/workflow';
import type { createStoreActivities, StoreGcInput, StoreGcReport } from '../activities/store.js';

/**
 * `expctl store gc`: one collection of the fleet store by the orchestrator's activity (only
 * activities change state), on the control queue. Short-lived; a collection that fails is not
 * retried here: the next one starts over, and nothing half done is lost (objects go last).
 */
export async function storeGcWorkflow(input: StoreGcInput): Promise<StoreGcReport> {
  const store = proxyActivities<ReturnType<typeof createStoreActivities>>({
    startToCloseTimeout: '30m',
    heartbeatTimeout: '2m',
    retry: { maximumAttempts: 1 },
  });
  return store.collectStoreGarbage(input);
}
