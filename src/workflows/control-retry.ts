import type { RetryPolicy } from '@temporalio/workflow';

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
