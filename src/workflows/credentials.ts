import { workflowInfo } from '@temporalio/workflow';
import type { Authorization } from '../domain/authorization.js';
import { authorizer, requirePermission } from './authorize.js';

/** `expctl auth revoke`: an admin's signed revocation, written to the catalog the orchestrator verifies against. */
export async function revokeCredentialWorkflow(input: {
  credential: string;
  authorization: Authorization;
}): Promise<{ revoked: string; by: string }> {
  const identity = await requirePermission({
    authorization: input.authorization,
    action: 'revoke_credential',
    target: input.credential,
    acceptedAt: workflowInfo().startTime.toISOString(),
  });
  await authorizer.revokeCredential({ credential: input.credential, by: identity.name });
  return { revoked: input.credential, by: identity.name };
}
