import { ApplicationFailure, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { AuthorizeInput, createAuthorizationActivities } from '../activities/authorization.js';
import { PERMISSION_DENIED, type Identity } from '../domain/authorization.js';
import { CONTROL_ACTIVITY, CONTROL_STEP } from './control-retry.js';

/** The orchestrator's verification activities (workflow code has no node:crypto). */
export const authorizer = proxyActivities<ReturnType<typeof createAuthorizationActivities>>(CONTROL_ACTIVITY);

/**
 * The same, run by the worker that runs the workflow (no trip through the server): the control
 * worker runs both, and a submission's first steps wait on it.
 */
export const localAuthorizer = proxyLocalActivities<ReturnType<typeof createAuthorizationActivities>>(CONTROL_STEP);

/** The identity behind a signed request that may do this; otherwise fails with permission_denied. */
export async function requirePermission(input: AuthorizeInput, verifier = authorizer): Promise<Identity> {
  const verdict = await verifier.authorize(input);
  if ('denied' in verdict) throw ApplicationFailure.nonRetryable(verdict.denied, PERMISSION_DENIED);
  return verdict.identity;
}
