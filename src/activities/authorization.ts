import { asyncLocalStorage } from '@temporalio/activity';
import type crypto from 'node:crypto';
import type { Catalog } from '../catalog/catalog.js';
import { deniedMessage, permits, type Action, type Identity } from '../domain/authorization.js';
import { contentDigest } from '../security/content-digest.js';
import { certificateOf, verifyAuthorization } from '../security/credentials.js';

export interface AuthorizationDeps {
  /** The issuer's public key: the fleet's trust root. */
  issuer: crypto.KeyObject;
  catalog: Catalog;
}

export interface AuthorizeInput {
  authorization: unknown;
  action: Action;
  target: string;
  /** What the request acts with (a workflow's input, a drain): its digest is recomputed here, never trusted. */
  content?: unknown;
  /** When the server accepted the request (ISO). */
  acceptedAt: string;
  /** For cancel: the identity that submitted the target. */
  owner?: string | null;
  /** A word for the audit trail (e.g. the drain reason). */
  detail?: string;
}

export type AuthorizeResult = { identity: Identity } | { denied: string };

/**
 * Which verification this is: the same for its retries and for a local activity run again after its
 * orchestrator died (its id is its place in the workflow), so the audit trail holds it once.
 */
function verificationSource(): string | null {
  const info = asyncLocalStorage.getStore()?.info;
  if (!info?.workflowExecution) return null;
  const { workflowExecution, activityId } = info;
  return `${workflowExecution.workflowId}/${workflowExecution.runId}/${activityId}`;
}

/**
 * Verification runs on the orchestrator (workflows have no node:crypto): every start, cancel,
 * drain, policy change and host registration passes here, and every answer goes to the audit trail.
 */
export function createAuthorizationActivities({ issuer, catalog }: AuthorizationDeps) {
  return {
    async authorize(input: AuthorizeInput): Promise<AuthorizeResult> {
      // Asked before verifying: verification itself is pure and reads only this answer.
      const certificate = certificateOf(input.authorization);
      const revoked = certificate ? await catalog.isRevoked(certificate) : false;
      const verified = verifyAuthorization(
        issuer,
        input.authorization,
        {
          action: input.action,
          target: input.target,
          digest: input.content === undefined ? '' : contentDigest(input.content),
          acceptedAt: new Date(input.acceptedAt),
        },
        () => revoked,
      );
      const identity = 'identity' in verified ? verified.identity : null;
      const allowed = identity !== null && permits(identity, input.action, input.owner);
      const denied = allowed
        ? null
        : deniedMessage(input.action, identity, 'refused' in verified ? verified.refused : undefined);
      await catalog.audit({
        source: verificationSource(),
        at: new Date().toISOString(),
        action: input.action,
        target: input.target,
        actor: identity?.name ?? null,
        role: identity?.role ?? null,
        credentialId: identity?.credentialId ?? null,
        allowed,
        detail: denied ?? input.detail ?? null,
      });
      return allowed ? { identity: identity! } : { denied: denied! };
    },

    /** Revokes a credential by id, or every credential of a name (`name:N`), issued so far. */
    async revokeCredential(input: { credential: string; by: string }): Promise<void> {
      await catalog.revoke(input.credential, input.by);
    },
  };
}
