/**
 * Signed git operations against expctl's fleet remote. The signed request goes to git through its
 * environment (GIT_CONFIG_*), never its command line, so no other user sees it in the process
 * table; it is valid for one act (fetch or push) within the signing window.
 */
import { FLEET_REMOTE_AUTH_SCHEME, FLEET_REMOTE_TARGET, gitUrlOf, isSignedRemote } from '../domain/fleet-remote.js';
import { signRequest, type Credential } from './credentials.js';

export type GitAct = 'fetch_code' | 'push_code';

/** The header value a signed fleet-remote request carries. */
export function fleetRemoteAuthorization(credential: Credential, act: GitAct): string {
  const signed = signRequest(credential, { action: act, target: FLEET_REMOTE_TARGET, digest: '' });
  return `${FLEET_REMOTE_AUTH_SCHEME} ${Buffer.from(JSON.stringify(signed)).toString('base64url')}`;
}

/** The signed request inside an `Authorization` header value, or null when it carries none. */
export function authorizationFromHeader(header: string | undefined): unknown {
  const match = header ? new RegExp(`^${FLEET_REMOTE_AUTH_SCHEME} ([A-Za-z0-9_-]+)$`).exec(header) : null;
  if (!match) return null;
  try {
    return JSON.parse(Buffer.from(match[1]!, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
}

/**
 * How to run git against `remote`: the URL git understands, and the environment that signs the
 * act for expctl's own remote (with no prompt when the server refuses). Other remotes: as they are.
 */
export function gitAccess(
  remote: string,
  act: GitAct,
  credential: (() => Credential) | Credential | undefined,
): { url: string; env: Record<string, string> } {
  if (!isSignedRemote(remote)) return { url: remote, env: {} };
  const held = typeof credential === 'function' ? credential() : credential;
  if (!held) throw new Error(`the fleet remote ${remote} takes signed requests, and this process has no credential`);
  return {
    url: gitUrlOf(remote),
    env: {
      GIT_TERMINAL_PROMPT: '0',
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'http.extraHeader',
      GIT_CONFIG_VALUE_0: `Authorization: ${fleetRemoteAuthorization(held, act)}`,
    },
  };
}
