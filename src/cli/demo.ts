import type { Client } from '@temporalio/client';
import { CONTROL_TASK_QUEUE, hostTaskQueue } from '../shared/constants.js';
import { smokeWorkflow } from '../workflows/smoke.js';

/** What `npm start` runs once the stack is up, to show it working end to end. */
export async function runDemo(client: Client, options: { host: string }): Promise<void> {
  const earlier = await client.workflow.count(`WorkflowType = 'smokeWorkflow'`);
  const workflowId = `smoke-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  const result = await client.workflow.execute(smokeWorkflow, {
    workflowId,
    taskQueue: CONTROL_TASK_QUEUE,
    args: [{ hostQueue: hostTaskQueue(options.host), tag: 'smoke' }],
    typedSearchAttributes: [],
  });
  console.log(`smoke workflow ${workflowId} completed: control answered "${result.control}", host ${result.host} offers ${result.slots} slot(s).`);
  console.log(`${earlier.count} earlier smoke run(s) found in the Temporal history.`);
}
