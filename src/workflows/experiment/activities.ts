import { getExternalWorkflowHandle, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { createControlActivities } from '../../activities/control.js';
import type { createHostActivities } from '../../activities/host.js';
import type { createRunStatusActivities } from '../../activities/run-status.js';
import { POOL_WORKFLOW_ID } from '../../shared/constants.js';
import { CONTROL_ACTIVITY, CONTROL_STEP } from '../control-retry.js';

type ControlActivities = ReturnType<typeof createControlActivities>;
export type HostActivities = ReturnType<typeof createHostActivities> & ReturnType<typeof createRunStatusActivities>;

export const control = proxyActivities<ControlActivities>(CONTROL_ACTIVITY);

/** Keeps a patch in the catalog, read from its host page by page: longer than one catalog write. */
export const patchKeeper = proxyActivities<ControlActivities>({ ...CONTROL_ACTIVITY, startToCloseTimeout: '5m' });

/**
 * The control steps that only read or write the catalog, run by the control worker that runs this
 * workflow: no trip through the server, so a submission's chain of steps is short. Steps that ask
 * other workflows (the pool, the tag) stay ordinary activities: a local one would hold this
 * workflow's task while waiting on another workflow's task on the same worker.
 */
export const localControl = proxyLocalActivities<ControlActivities>(CONTROL_STEP);

export function hostActivities(hostQueue: string, scheduleToStartTimeout?: string) {
  return proxyActivities<HostActivities>({
    taskQueue: hostQueue,
    ...(scheduleToStartTimeout ? { scheduleToStartTimeout } : {}),
    scheduleToCloseTimeout: '5m',
    startToCloseTimeout: '2m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
  });
}

/** The pool that grants this run's leases. */
export const pool = () => getExternalWorkflowHandle(POOL_WORKFLOW_ID);
