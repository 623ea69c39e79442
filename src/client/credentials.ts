import crypto from 'node:crypto';
import type { Client } from '@temporalio/client';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { revokeCredentialWorkflow } from '../workflows/credentials.js';
import { signAs } from './sign.js';

/** An admin's signed revocation of a credential ID, or of every credential of a name (`name:NAME`). */
export async function revokeCredential(client: Client, credential: string) {
  return client.workflow.execute(revokeCredentialWorkflow, {
    workflowId: `expctl-revoke-${crypto.randomUUID()}`,
    taskQueue: CONTROL_TASK_QUEUE,
    args: [{ credential, authorization: signAs('revoke_credential', credential) }],
  });
}
