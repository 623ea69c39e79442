import path from 'node:path';
import { execa } from 'execa';
import { isRemoteRepo } from '../gpu-worker/git.js';

/** The commit to run could not be resolved or shipped; the message says why and what to do. */
export class SourceError extends Error {}

/** git's answer; `raw` keeps it as printed (porcelain output starts with a meaningful space). */
async function git(cwd: string, args: string[], { raw = false } = {}): Promise<string> {
  try {
    const { stdout } = await execa('git', ['-C', cwd, ...args]);
    return raw ? stdout : stdout.trim();
  } catch (error) {
    throw new SourceError(((error as { stderr?: string }).stderr ?? (error as Error).message).trim());
  }
}

/**
 * The paths of `git status --porcelain -z`: entries `XY PATH`, NUL-separated; a rename or copy is
 * followed by its original path as an entry of its own.
 */
export function porcelainPaths(output: string): string[] {
  const entries = output.split('\0');
  const paths: string[] = [];
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    if (entry.length < 4) continue;
    paths.push(entry.slice(3));
    if (entry[0] === 'R' || entry[0] === 'C') i++;
  }
  return paths;
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
  // A name starting with "-" would be read by git as an option.
  if (wanted.startsWith('-') || wanted.length > 255 || /[\s\u0000-\u001f\u007f]/.test(wanted))
    throw new SourceError(`--commit ${JSON.stringify(wanted.slice(0, 80))}: expected a commit SHA, branch or tag`);
  let sha: string;
  try {
    sha = await git(top, ['rev-parse', '--verify', '--quiet', `${wanted}^{commit}`]);
  } catch {
    // --verify says nothing of why; an ambiguous prefix is named as one, as git would.
    const ambiguous = await git(top, ['rev-parse', `${wanted}^{commit}`]).then(
      () => false,
      (error: Error) => /short object ID \S+ is ambiguous/.test(error.message),
    );
    if (ambiguous)
      throw new SourceError(
        `commit ${wanted} is ambiguous in ${top}: more than one object starts with it; give more characters of the SHA`,
      );
    throw new SourceError(`commit ${wanted} does not exist in ${top}`);
  }
  if (!commit) {
    // Without optional locks: git would otherwise rewrite the submitter's index as it looks.
    const dirty = porcelainPaths(
      await git(top, ['--no-optional-locks', 'status', '--porcelain', '-z', '--untracked-files=no'], { raw: true }),
    );
    if (dirty.length > 0) {
      const files = dirty.slice(0, 5).join(', ');
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
