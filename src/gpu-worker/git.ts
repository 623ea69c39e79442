import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { Credential } from '../security/credentials.js';
import { gitAccess } from '../security/fleet-remote-auth.js';
import { PRIVATE_DIR_MODE } from '../security/files.js';
import { shippedCommitRef } from '../domain/fleet-remote.js';
import { KeyedQueue } from '../shared/keyed-queue.js';
import { ContentMemo } from './content-memo.js';

/** Git operations a worker needs: resolve a repository locally, inspect a commit, make worktrees. */

export function isRemoteRepo(repo: string): boolean {
  return /^[a-z+]+:\/\//i.test(repo) || /^[\w.-]+@[\w.-]+:/.test(repo);
}

/** What git said of a failed clone, in one line (its `fatal:` line), without the command line execa adds. */
function cloneProblem(error: { stderr?: string; timedOut?: boolean }): string {
  if (error.timedOut) return 'git clone took too long';
  const lines = (error.stderr ?? '')
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const fatal = lines.find((line) => line.startsWith('fatal:')) ?? lines.at(-1);
  return fatal ? fatal.replace(/^fatal:\s*/, '') : 'git clone failed';
}

export async function git(cwd: string, args: string[]): Promise<string> {
  const { stdout } = await execa('git', ['-C', cwd, ...args], { timeout: 120_000 });
  return stdout;
}

/** One clone or fetch at a time per cached remote (runs of one commit arrive together). */
const cacheTurns = new KeyedQueue();

/**
 * Returns a local repository holding the request's commit: a bare cache of the worker's own
 * (`<work dir>/repos/`), cloned from the request's repository, a URL (the fleet remote, or any
 * remote) or a path on this host, and fetched on demand; worktrees are made there, so the
 * submitter's repository is only ever read. A commit is fetched by the ref a submitter ships it
 * under, else by its SHA, else with every branch; it is known by its SHA, so what the worker runs
 * is what was submitted.
 */
export async function localRepository(
  repo: string,
  workDir: string,
  commit: string,
  /** The host's credential: expctl's fleet remote serves signed fetches only. */
  credential?: Credential,
): Promise<string> {
  if (isRemoteRepo(repo)) return cachedRepository(repo, repo, workDir, commit, credential);
  const resolved = path.resolve(repo);
  try {
    // A checkout's .git (a directory, or a file in a worktree) answers without a git process;
    // anything else (a bare repository, a subdirectory) is asked of git.
    await fs.access(path.join(resolved, '.git')).catch(() => git(resolved, ['rev-parse', '--git-dir']));
  } catch {
    throw new Error(
      `repo ${repo} is not a git repository on this host; ` +
        'set EXPCTL_FLEET_REMOTE on the submitting host so commits reach workers through the fleet remote',
    );
  }
  return cachedRepository(`path:${resolved}`, resolved, workDir, commit, credential).catch((error: Error) => {
    // Nothing to push on one host: the commit is simply not in the submitter's repository.
    if (error instanceof MissingCommitError) throw new Error(`commit ${commit} does not exist in ${repo}`);
    throw error;
  });
}

/** The commit is in none of what the source offers (its shipped ref, its SHA, its branches). */
class MissingCommitError extends Error {}

/** The cache of `source` (known by `key`) holding `commit`: cloned the first time, fetched into when it lacks it. */
async function cachedRepository(
  key: string,
  source: string,
  workDir: string,
  commit: string,
  credential: Credential | undefined,
): Promise<string> {
  const cache = path.join(workDir, 'repos', crypto.createHash('sha256').update(key).digest('hex').slice(0, 16));
  return cacheTurns.run(cache, async () => {
    try {
      await fs.access(cache);
    } catch {
      // Cloned beside, then moved in: a clone cut short never looks like a cache. A path is cloned
      // through git's transport (--no-local), never by hard links to the submitter's object files.
      await fs.mkdir(path.dirname(cache), { recursive: true, mode: PRIVATE_DIR_MODE });
      const partial = `${cache}.partial-${process.pid}`;
      await fs.rm(partial, { recursive: true, force: true });
      const access = gitAccess(source, 'fetch_code', credential);
      await execa('git', ['clone', '--quiet', '--bare', '--no-local', access.url, partial], {
        timeout: 600_000,
        env: access.env,
      }).catch((error: { stderr?: string; timedOut?: boolean }) => {
        throw new Error(`--repo ${source} could not be cloned on this host: ${cloneProblem(error)}`);
      });
      await fs.rename(partial, cache);
    }
    if (await commitExists(cache, commit)) return cache;
    for (const refspec of [
      `+${shippedCommitRef(commit)}:${shippedCommitRef(commit)}`,
      commit,
      '+refs/heads/*:refs/heads/*',
    ]) {
      const access = gitAccess(source, 'fetch_code', credential);
      const fetched = await execa('git', ['-C', cache, 'fetch', '--quiet', 'origin', refspec], {
        timeout: 120_000,
        env: access.env,
      }).then(
        () => true,
        () => false,
      );
      if (fetched && (await commitExists(cache, commit))) return cache;
    }
    throw new MissingCommitError(
      `commit ${commit} is not in ${source} (fetched ${shippedCommitRef(commit)}, the SHA and every branch); ` +
        'push it there, or submit with EXPCTL_FLEET_REMOTE set so expctl pushes it',
    );
  });
}

/**
 * What git says of a commit's objects, remembered: runs of one commit (seeds, a sweep over
 * arguments, reruns) are validated without a git process each. Patches are larger: fewer are kept.
 */
const commitAnswers = new ContentMemo<string>(1024);
const patches = new ContentMemo<{ patch: string; files: string[] }>(64);
const asked = (repo: string, args: string[]) => commitAnswers.get(`${repo}\0${args.join('\0')}`, () => git(repo, args));

/** Only a commit that exists is remembered: one that is missing may be fetched a moment later. */
export async function commitExists(repo: string, commit: string): Promise<boolean> {
  return asked(repo, ['cat-file', '-e', `${commit}^{commit}`]).then(
    () => true,
    () => false,
  );
}

export async function readFileAtCommit(repo: string, commit: string, file: string): Promise<string> {
  return asked(repo, ['show', `${commit}:${file.replace(/^\.\//, '')}`]);
}

/** The commit's full patch against its first parent (the whole tree for a root commit). */
export function commitPatch(repo: string, commit: string): Promise<{ patch: string; files: string[] }> {
  return patches.get(`${repo}\0${commit}`, async () => {
    const [patch, names] = await Promise.all([
      git(repo, ['show', '--format=commit %H%nAuthor: %an <%ae>%nDate: %aI%n%n%B', '--patch', '--binary', commit]),
      git(repo, ['show', '--format=', '--name-only', commit]),
    ]);
    return { patch: `${patch}\n`, files: names.split('\n').filter(Boolean) };
  });
}

/** An isolated checkout of one commit, so parallel experiments never share a train.py. */
export async function addWorktree(repo: string, commit: string, dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
  const add = () => git(repo, ['worktree', 'add', '--detach', '--force', dir, commit]);
  // --force already takes over a registration whose directory is gone; pruning (a scan of every
  // worktree) is kept for when git still refuses.
  await add().catch(async () => {
    await git(repo, ['worktree', 'prune']);
    await add();
  });
}

/**
 * Removes a run's worktree and its registration. What `git worktree remove --force` does (delete
 * the tree, then its administrative directory), without a git process per run where the two point
 * at each other; anything else (a locked or unknown tree) is left to git.
 */
export async function removeWorktree(repo: string, dir: string): Promise<void> {
  const admin = await registrationOf(repo, dir);
  if (admin) {
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rm(admin, { recursive: true, force: true });
    return;
  }
  await git(repo, ['worktree', 'remove', '--force', dir]).catch(() => fs.rm(dir, { recursive: true, force: true }));
}

/** The administrative directory (`<repo>/worktrees/<name>`) of the worktree at `dir`, when git would remove it; else null. */
async function registrationOf(repo: string, dir: string): Promise<string | null> {
  try {
    const [repoPath, treePath] = await Promise.all([fs.realpath(repo), fs.realpath(dir)]);
    const pointer = await fs.readFile(path.join(treePath, '.git'), 'utf8');
    const admin = worktreeAdminDir(repoPath, treePath, pointer);
    if (!admin) return null;
    const [back, locked] = await Promise.all([
      fs.readFile(path.join(admin, 'gitdir'), 'utf8'),
      fs.access(path.join(admin, 'locked')).then(
        () => true,
        () => false,
      ),
    ]);
    return !locked && pointsBack(back, treePath) ? admin : null;
  } catch {
    return null;
  }
}

/**
 * The administrative directory a worktree's `.git` file names (`gitdir: PATH`), when it is one of
 * `repo`'s worktree registrations; null otherwise (a tree a script rewrote names something else).
 */
export function worktreeAdminDir(repo: string, tree: string, dotGit: string): string | null {
  const named = /^gitdir: (.+)$/m.exec(dotGit)?.[1]?.trim();
  if (!named) return null;
  const admin = path.resolve(tree, named);
  return path.dirname(admin) === path.join(repo, 'worktrees') && path.basename(admin) !== '' ? admin : null;
}

/** Whether a registration's `gitdir` file names this tree's `.git`: the registration is this tree's. */
export function pointsBack(gitdirFile: string, tree: string): boolean {
  const named = gitdirFile.trim();
  return named !== '' && path.resolve(tree, named) === path.join(tree, '.git');
}

/** Finds a program on PATH the way execa will (no shell involved). */
export async function whichProgram(program: string, envPath = process.env.PATH ?? ''): Promise<string | null> {
  for (const dir of envPath.split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, program);
    try {
      await fs.access(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return null;
}

export interface TreeEntry {
  /** git's mode: 100644 file, 100755 executable, 120000 symlink, 040000 directory, 160000 submodule. */
  mode: string;
  type: 'blob' | 'tree' | 'commit';
}

/** The size in bytes of `file` at `commit` (git's answer; the blob is not read). */
export async function blobSize(repo: string, commit: string, file: string): Promise<number> {
  return Number(await asked(repo, ['cat-file', '-s', `${commit}:${file.replace(/^\.\//, '')}`]));
}

/** The entry for `file` in the commit's tree, without following symlinks; null when there is none. */
export async function treeEntry(repo: string, commit: string, file: string): Promise<TreeEntry | null> {
  const output = await asked(repo, ['ls-tree', '-z', commit, '--', file]).catch(() => '');
  const line = output.split('\0').find((entry) => entry.endsWith(`\t${file}`));
  if (!line) return null;
  const [mode, type] = line.slice(0, line.indexOf('\t')).split(' ') as [string, TreeEntry['type']];
  return { mode, type };
}
