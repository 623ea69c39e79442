import { execa } from 'execa';
import { isRemoteRepo } from '../gpu-worker/git.js';
import { shippedCommitRef } from '../domain/fleet-remote.js';
import { loadCredential, type Credential } from '../security/credentials.js';
import { gitAccess } from '../security/fleet-remote-auth.js';
import { AccessError } from '../security/access-error.js';
import { SourceError } from './source.js';

/**
 * Pushes `commit` from the submitter's repository to the fleet remote (under a ref of its own, so
 * nothing the team pushes is touched); idempotent. Workers then fetch it from there by its SHA.
 */
export async function shipCommit(
  repo: string,
  commit: string,
  remote: string,
  credential: () => Credential = () => loadCredential(),
): Promise<void> {
  try {
    const access = gitAccess(remote, 'push_code', credential);
    await execa('git', ['-C', repo, 'push', '--quiet', access.url, `${commit}:${shippedCommitRef(commit)}`], {
      timeout: 300_000,
      env: access.env,
    });
  } catch (error) {
    // A missing or unusable credential is a refusal of the caller's own, not a bad request.
    if (error instanceof AccessError) throw error;
    const detail = ((error as { stderr?: string }).stderr || (error as Error).message).trim();
    throw new SourceError(`could not push ${commit.slice(0, 12)} to the fleet remote ${remote}: ${detail}`);
  }
}

/**
 * Where workers find the source: with a fleet remote, the remote (workers never read the
 * submitter's path); without one, the source as it is. Pure, so a request can name it, and be
 * checked, before anything is pushed.
 */
export function fleetSourceFor(
  source: { repo: string; commit: string },
  remote: string | undefined,
): { repo: string; commit: string } {
  if (!remote || isRemoteRepo(source.repo)) return source;
  return { repo: remote, commit: source.commit };
}

/** Pushes the commit to the fleet remote when workers fetch it from there (fleetSourceFor); otherwise nothing. */
export async function shipToFleet(source: { repo: string; commit: string }, remote: string | undefined): Promise<void> {
  if (fleetSourceFor(source, remote) !== source) await shipCommit(source.repo, source.commit, remote!);
}

/** The commit shipped where workers find it (shipToFleet), and that place (fleetSourceFor). */
export async function sourceForFleet(
  source: { repo: string; commit: string },
  remote: string | undefined,
): Promise<{ repo: string; commit: string }> {
  await shipToFleet(source, remote);
  return fleetSourceFor(source, remote);
}
