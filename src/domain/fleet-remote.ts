/** How commits travel through the fleet's git remote. Pure: the submitter, the worker and the served remote share it. */

/** The ref a shipped commit is kept under on the fleet remote: one per commit, named by it, never moved. */
export function shippedCommitRef(commit: string): string {
  if (!/^[0-9a-f]{40}$/.test(commit)) throw new Error(`not a full commit SHA: ${commit}`);
  return `refs/expctl/commits/${commit}`;
}

/** Why a served remote refuses a pushed ref update, or null: only new refs/expctl/commits/<sha> naming <sha>. */
export function refUpdateRefusal(ref: string, oldSha: string, newSha: string): string | null {
  const match = /^refs\/expctl\/commits\/([0-9a-f]{40})$/.exec(ref);
  if (!match) return `only refs/expctl/commits/<sha> may be pushed here, not ${ref}`;
  if (/^0+$/.test(newSha)) return `${ref} is never deleted`;
  if (match[1] !== newSha) return `${ref} must name commit ${match[1]}, not ${newSha}`;
  if (!/^0+$/.test(oldSha) && oldSha !== newSha) return `${ref} exists and never moves`;
  return null;
}

/**
 * expctl's own fleet remote speaks git's smart HTTP protocol and wants a signed request per git
 * operation, so its URLs say so: `expctl+http://HOST:PORT/fleet.git` (or `expctl+https://` behind
 * a TLS proxy). Any other remote (`git@…`, `https://…` of the team's own hosting) is used as it is.
 */
export const SIGNED_REMOTE = /^expctl\+(https?):\/\//;

export function isSignedRemote(remote: string): boolean {
  return SIGNED_REMOTE.test(remote);
}

/** The URL git itself is given. */
export function gitUrlOf(remote: string): string {
  return remote.replace(SIGNED_REMOTE, '$1://');
}

/** What a signed fleet-remote request is signed for (one target: the fleet's code). */
export const FLEET_REMOTE_TARGET = 'fleet-remote';

/** The HTTP header a signed request travels in: `Authorization: Expctl <base64url JSON>`. */
export const FLEET_REMOTE_AUTH_SCHEME = 'Expctl';

/**
 * Which act an HTTP request of git's smart protocol is: reading (upload-pack) or pushing
 * (receive-pack); null for anything else, which the server refuses (no dumb protocol, no browsing).
 */
export function smartGitAction(
  method: string,
  pathname: string,
  service: string | null,
): { action: 'fetch_code' | 'push_code'; repository: string } | null {
  const info = /^\/([\w.-]+\.git)\/info\/refs$/.exec(pathname);
  if (method === 'GET' && info) {
    if (service === 'git-upload-pack') return { action: 'fetch_code', repository: info[1]! };
    if (service === 'git-receive-pack') return { action: 'push_code', repository: info[1]! };
    return null;
  }
  const rpc = /^\/([\w.-]+\.git)\/(git-upload-pack|git-receive-pack)$/.exec(pathname);
  if (method === 'POST' && rpc)
    return { action: rpc[2] === 'git-upload-pack' ? 'fetch_code' : 'push_code', repository: rpc[1]! };
  return null;
}
