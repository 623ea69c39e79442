import { ApplicationFailure, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { createAuthorizationActivities } from '../activities/authorization.js';
import { PERMISSION_DENIED, type Authorization } from '../domain/authorization.js';

const authorizer = proxyActivities<ReturnType<typeof createAuthorizationActivities>>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 8 },
});

/** `expctl auth revoke`: an admin's signed revocation, written to the catalog the orchestrator verifies against. */
export async function revokeCredentialWorkflow(input: {
  credential: string;
  authorization: Authorization;
}): Promise<{ revoked: string; by: string }> {
  const verdict = await authorizer.authorize({
    authorization: input.authorization,
    action: 'revoke_credential',
    target: input.credential,
    acceptedAt: workflowInfo().startTime.toISOString(),
  });
  if ('denied' in verdict) throw ApplicationFailure.nonRetryable(verdict.denied, PERMISSION_DENIED);
  await authorizer.revokeCredential({ credential: input.credential, by: verdict.identity.name });
  return { revoked: input.credential, by: verdict.identity.name };
}
