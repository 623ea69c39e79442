/**
 * Who may do what. Every command acts as an identity holding one role; this table is the one
 * place that says which role an action needs. Pure: workflows, activities and the CLI import it.
 */
import { EXIT_CODES } from './exit-codes.js';

export const ROLES = ['submitter', 'operator', 'worker', 'admin', 'producer'] as const;
export type Role = (typeof ROLES)[number];

export const ACTIONS = [
  'submit',
  'cancel',
  'drain',
  'configure_tag',
  'configure_pool',
  'register_host',
  'revoke_credential',
  'promote',
  'approve_promotion',
  'rollback_model',
  'add_data',
  'configure_dataset',
  'push_code',
  'fetch_code',
] as const;
export type Action = (typeof ACTIONS)[number];

/** The roles that may act; `cancel` also lets a submitter act on what it submitted itself. */
const ALLOWED: Record<Action, readonly Role[]> = {
  submit: ['submitter', 'operator', 'admin'],
  cancel: ['operator', 'admin'],
  drain: ['operator', 'admin'],
  configure_tag: ['operator', 'admin'],
  configure_pool: ['operator', 'admin'],
  register_host: ['worker', 'admin'],
  revoke_credential: ['admin'],
  promote: ['operator', 'admin'],
  approve_promotion: ['operator', 'admin'],
  rollback_model: ['operator', 'admin'],
  add_data: ['producer', 'operator', 'admin'],
  configure_dataset: ['operator', 'admin'],
  // The fleet remote: submitters ship the commits they run; workers fetch them.
  push_code: ['submitter', 'operator', 'admin'],
  fetch_code: ['worker', 'submitter', 'operator', 'admin'],
};

/** Error type (Temporal failure type and CLI JSON `error`) of every refusal. */
export const PERMISSION_DENIED = 'permission_denied';
/** Exit code of a refusal (BRIEF §4's codes, plus this one). */
export const PERMISSION_DENIED_EXIT_CODE = EXIT_CODES.permission_denied;

export interface Identity {
  name: string;
  role: Role;
  /** The credential's id (revocation and the audit trail name it). */
  credentialId: string;
}

/** The roles `action` needs, in words for refusals: "operator or admin". */
export function rolesFor(action: Action, ownResource = false): string {
  const roles = [...ALLOWED[action]];
  if (action === 'cancel' && ownResource) roles.unshift('submitter');
  return roles.join(' or ');
}

/** Whether `identity` may do `action`; `owner` is the identity name that submitted the target, for cancel. */
export function permits(identity: Identity, action: Action, owner?: string | null): boolean {
  if (ALLOWED[action].includes(identity.role)) return true;
  return action === 'cancel' && identity.role === 'submitter' && owner != null && owner === identity.name;
}

/** The refusal text: names the action, who asked and the role it needs. */
export function deniedMessage(action: Action, who: Identity | null, why?: string): string {
  const actor = who ? `${who.name} (${who.role})` : 'a caller without a valid credential';
  const needs =
    action === 'cancel'
      ? `only the identity that submitted it, or the ${rolesFor(action)} role, may`
      : `needs the ${rolesFor(action)} role`;
  return `permission_denied: ${actor} may not ${action.replace(/_/g, ' ')}: ${why ?? needs}`;
}

/**
 * A credential's certificate: the issuer's signature binds a name and role to the holder's
 * public key. Requests are signed with the holder's private key, so what travels (and stays in
 * history) proves one request and cannot be lifted to make another.
 */
export interface Certificate {
  id: string;
  name: string;
  role: Role;
  /** The holder's Ed25519 public key, SPKI DER in base64. */
  publicKey: string;
  issuedAt: string;
  expiresAt: string | null;
}

/** One signed request: the certificate, what it asks, on what, and the holder's signature. */
export interface Authorization {
  certificate: Certificate;
  /** The issuer's signature over the certificate (base64). */
  certificateSignature: string;
  action: Action;
  /** The workflow, host, slot or credential acted on. */
  target: string;
  /** A digest of the request's content (e.g. the experiment request), so it cannot be swapped. */
  digest: string;
  signedAt: string;
  /** The holder's signature over requestMessage(...) (base64). */
  signature: string;
}

/** The bytes the issuer signs. Key order is fixed here, never left to an object's history. */
export function certificateMessage(c: Certificate): string {
  return JSON.stringify(['expctl-certificate-v1', c.id, c.name, c.role, c.publicKey, c.issuedAt, c.expiresAt]);
}

/** The bytes a holder signs for one request. */
export function requestMessage(a: Omit<Authorization, 'signature' | 'certificateSignature'>): string {
  return JSON.stringify(['expctl-request-v1', a.certificate.id, a.action, a.target, a.digest, a.signedAt]);
}

/** How far a request's signing time may be from the moment the server accepted it. */
export const SIGNATURE_WINDOW_MS = 15 * 60 * 1000;

/** A name for an identity: letters, digits, "_", ".", "-", "@". */
export const IDENTITY_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$/;
