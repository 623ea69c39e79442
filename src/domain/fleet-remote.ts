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
