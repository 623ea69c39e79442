import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { PERMISSION_DENIED, type Action, type Authorization } from '../domain/authorization.js';
import { loadCredential, signRequest, type Credential } from '../security/credentials.js';
import { contentDigest } from '../security/content-digest.js';

/** Signs one request as this process's identity (EXPCTL_CREDENTIAL_FILE, else the state directory's). */
export function signAs(
  action: Action,
  target: string,
  content?: unknown,
  credential: Credential = loadCredential(),
): Authorization {
  return signRequest(credential, {
    action,
    target,
    digest: content === undefined ? '' : contentDigest(content),
  });
}

/** The refusal inside a failed workflow or update, if it was one (its message names action and role). */
export function permissionDenied(error: unknown): string | null {
  const cause =
    error instanceof WorkflowFailedError || error instanceof WorkflowUpdateFailedError ? error.cause : error;
  return cause instanceof ApplicationFailure && cause.type === PERMISSION_DENIED ? cause.message : null;
}
