import { proxyActivities, upsertSearchAttributes } from '@temporalio/workflow';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { CONTROL_STEP_TIMEOUT } from './control-retry.js';
import { SA } from '../shared/search-attributes.js';
import type { createControlActivities } from '../activities/control.js';
import type { createHostActivities } from '../activities/host.js';

/** Proves the stack end to end: one activity on the control queue, one on a GPU worker's host queue. */
export async function smokeWorkflow(input: {
  hostQueue: string;
  tag: string;
}): Promise<{ control: string; host: string; slots: number }> {
  upsertSearchAttributes([
    { key: SA.tag, value: input.tag },
    { key: SA.status, value: 'running' },
  ]);
  const control = proxyActivities<ReturnType<typeof createControlActivities>>({
    taskQueue: CONTROL_TASK_QUEUE,
    startToCloseTimeout: CONTROL_STEP_TIMEOUT,
  });
  const host = proxyActivities<ReturnType<typeof createHostActivities>>({
    taskQueue: input.hostQueue,
    startToCloseTimeout: '30s',
    scheduleToCloseTimeout: '2m',
  });
  const controlAnswer = await control.ping();
  const description = await host.describeHost();
  upsertSearchAttributes([{ key: SA.status, value: 'completed' }]);
  return { control: controlAnswer, host: description.host, slots: description.slots.length };
}
