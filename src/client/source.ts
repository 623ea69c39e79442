import path from 'node:path';
import { execa } from 'execa';
import { isRemoteRepo } from '../gpu-worker/git.js';

/** The commit to run could not be resolved or shipped; the message says why and what to do. */
export class SourceError extends Error {}

async function git(cwd: string, args: string[]): Promise<string> {
  try {
    return (await execa('git', ['-C', cwd, ...args])).stdout.trim();
  } catch (error) {
    throw new SourceError(((error as { stderr?: string }).stderr ?? (error as Error).message).trim());
  }
}

/**
 * Resolves what the caller named into an exact commit. Uncommitted changes to tracked files are
 * refused: the experiment must be reproducible from its commit alone, and the agent loop commits
 * before it runs anyway.
 */
export async function resolveSource(
  repo: string | undefined,
  commit: string | undefined,
): Promise<{ repo: string; commit: string }> {
  if (repo && isRemoteRepo(repo)) {
    if (!commit || !/^[0-9a-f]{40}$/.test(commit))
      throw new SourceError('with a remote --repo URL, --commit must be a full 40-character SHA');
    return { repo, commit };
  }
  const dir = path.resolve(repo ?? '.');
  let top: string;
  try {
    top = await git(dir, ['rev-parse', '--show-toplevel']);
  } catch {
    throw new SourceError(`${dir} is not inside a git repository; commit your training code first or pass --repo`);
  }
  const wanted = commit ?? 'HEAD';
  let sha: string;
  try {
    sha = await git(top, ['rev-parse', '--verify', `${wanted}^{commit}`]);
  } catch {
    throw new SourceError(`commit ${wanted} does not exist in ${top}`);
  }
  if (!commit) {
    // Without optional locks: git would otherwise rewrite the submitter's index as it looks.
    const dirty = await git(top, ['--no-optional-locks', 'status', '--porcelain', '--untracked-files=no']);
    if (dirty) {
      const files = dirty
        .split('\n')
        .map((line) => line.slice(3))
        .slice(0, 5)
        .join(', ');
      throw new SourceError(
        `uncommitted changes in ${top} (${files}); commit them (the experiment runs the commit, not the working tree) or pass --commit`,
      );
    }
  }
  return { repo: top, commit: sha };
}

/**
 * A batch's variants, each resolved and checked to be a child of the base (so every variant is
 * one change on the same code), with its subject line as the default hypothesis.
 */
export async function resolveVariants(
  repo: string,
  base: string,
  commits: string[],
): Promise<{ commit: string; subject: string }[]> {
  if (isRemoteRepo(repo)) {
    const full = commits.find((commit) => !/^[0-9a-f]{40}$/.test(commit));
    if (full !== undefined)
      throw new SourceError(`with a remote --repo URL, every commit must be a full SHA, not ${full}`);
    return commits.map((commit) => ({ commit, subject: '' }));
  }
  const variants = [];
  for (const named of commits) {
    const { commit } = await resolveSource(repo, named);
    const parent = await git(repo, ['rev-parse', '--verify', `${commit}^1`]).catch(() => '(none)');
    if (parent !== base)
      throw new SourceError(
        `commit ${named} is not a child of the base ${base.slice(0, 12)} (its parent is ${parent.slice(0, 12)}); ` +
          'make each variant one commit on the base, or pass --base',
      );
    variants.push({ commit, subject: await git(repo, ['log', '-1', '--format=%s', commit]) });
  }
  return variants;
}

/**
 * A variant for a batch: one commit on `base` whose only change is `file` (at the tree's root) set
 * to `content`, made with git's plumbing so no branch or working tree moves (as an agent would).
 */
export async function commitVariant(
  repo: string,
  base: string,
  file: string,
  content: string,
  message: string,
  /** Who commits, where the caller's git may have no identity configured (a demo, a bench). */
  identity?: { name: string; email: string },
): Promise<string> {
  const blob = (await execa('git', ['-C', repo, 'hash-object', '-w', '--stdin'], { input: content })).stdout.trim();
  const entries = (await git(repo, ['ls-tree', base])).split('\n').filter((line) => !line.endsWith(`\t${file}`));
  entries.push(`100644 blob ${blob}\t${file}`);
  const tree = (await execa('git', ['-C', repo, 'mktree'], { input: `${entries.join('\n')}\n` })).stdout.trim();
  const as = identity ? ['-c', `user.name=${identity.name}`, '-c', `user.email=${identity.email}`] : [];
  return git(repo, [...as, 'commit-tree', tree, '-p', base, '-m', message]);
}
