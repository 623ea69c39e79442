import { allHandlersFinished, condition, continueAsNew, workflowInfo } from '@temporalio/workflow';
import type { DatasetState } from '../domain/datasets.js';
import { HISTORY_EVENTS_LIMIT } from '../domain/limits.js';
import { listen } from './dataset/handlers.js';
import { newHome } from './dataset/state.js';

/**
 * One durable home per dataset (`expctl-dataset-NAME`): takes each signed shard delivery, stores
 * it, decides which version it belongs to (duplicate, conflict, late), opens versions as child
 * workflows and seals them. Deliveries are at-least-once, in any order. Its work is all in its
 * handlers (dataset/handlers.ts); the run itself only waits to continue as new.
 */
export async function datasetWorkflow(dataset: string, carried?: DatasetState): Promise<void> {
  const home = newHome(dataset, carried);
  listen(home);
  await condition(() => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > HISTORY_EVENTS_LIMIT);
  await condition(allHandlersFinished);
  await continueAsNew<typeof datasetWorkflow>(dataset, home.state);
}
