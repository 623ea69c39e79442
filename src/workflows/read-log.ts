import { proxyActivities } from '@temporalio/workflow';
import type { createHostActivities } from '../activities/host.js';

/** Reads part of a run's log from the host that ran it, so `expctl logs` works for remote workers. */
export async function readLogWorkflow(input: {
  hostQueue: string;
  experimentId: string;
  offset: number;
  maxBytes: number;
}) {
  const host = proxyActivities<ReturnType<typeof createHostActivities>>({
    taskQueue: input.hostQueue,
    startToCloseTimeout: '30s',
    scheduleToCloseTimeout: '1m',
    retry: { maximumAttempts: 3 },
  });
  return host.readLog(input.experimentId, input.offset, input.maxBytes);
}
