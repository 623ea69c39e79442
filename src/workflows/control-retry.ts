import type { ActivityOptions, LocalActivityOptions, RetryPolicy } from '@temporalio/workflow';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';

/**
 * How every workflow retries a control step (a catalog write, a tag update, a verification): soon
 * at first, then every 20 s at most, eight tries in all, whether it runs as an activity or a local one.
 */
export const CONTROL_RETRY: RetryPolicy = {
  initialInterval: '1s',
  backoffCoefficient: 2,
  maximumInterval: '20s',
  maximumAttempts: 8,
};

/** How long one try of a control step may take. */
export const CONTROL_STEP_TIMEOUT = '30s';

/** A control step as a local activity, run by the worker that runs the workflow. */
export const CONTROL_STEP = {
  startToCloseTimeout: CONTROL_STEP_TIMEOUT,
  retry: CONTROL_RETRY,
} satisfies LocalActivityOptions;

/** A control step as an activity on the control queue. */
export const CONTROL_ACTIVITY = { taskQueue: CONTROL_TASK_QUEUE, ...CONTROL_STEP } satisfies ActivityOptions;
