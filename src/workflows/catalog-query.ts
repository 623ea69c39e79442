import { proxyActivities } from '@temporalio/workflow';
import type { createCatalogActivities } from '../activities/catalog.js';
import type { CatalogAnswers, CatalogQuery } from '../catalog/queries.js';
import { CATALOG_QUERY_REFUSED } from '../shared/constants.js';
import { CONTROL_STEP_TIMEOUT } from './control-retry.js';

/**
 * One read of the operating record for a reader on any host: the orchestrator's queryCatalog
 * activity answers it, bounded in size (catalog/queries.ts). Short-lived, like a function call.
 */
export async function catalogQueryWorkflow(query: CatalogQuery): Promise<CatalogAnswers[CatalogQuery['kind']]> {
  const catalog = proxyActivities<ReturnType<typeof createCatalogActivities>>({
    startToCloseTimeout: CONTROL_STEP_TIMEOUT,
    retry: { initialInterval: '500ms', maximumAttempts: 3, nonRetryableErrorTypes: [CATALOG_QUERY_REFUSED] },
  });
  return catalog.queryCatalog(query);
}
