import crypto from 'node:crypto';
import { execa } from 'execa';
import { git } from './git.js';

/** Dependency files at a commit's root whose hashes the record keeps (what the run was built from). */
export const LOCKFILES = [
  'uv.lock',
  'requirements.txt',
  'poetry.lock',
  'pyproject.toml',
  'Pipfile.lock',
  'environment.yml',
  'package-lock.json',
];

/** Commits and blobs remembered per worker process; both are content-addressed, so never stale. */
const MEMO_LIMIT = 512;
const byCommit = new Map<string, Promise<Record<string, string>>>();
const byBlob = new Map<string, Promise<string>>();

function remember<T>(memo: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  const known = memo.get(key);
  if (known) return known;
  const made = make();
  memo.set(key, made);
  // A failure is not remembered: the next run asks git again.
  made.catch(() => memo.delete(key));
  if (memo.size > MEMO_LIMIT) memo.delete(memo.keys().next().value!);
  return made;
}

/** Entries of `git ls-tree -z` output that are blobs: path → object id. */
export function blobsInTree(lsTree: string): Map<string, string> {
  const blobs = new Map<string, string>();
  for (const entry of lsTree.split('\0')) {
    const tab = entry.indexOf('\t');
    if (tab < 0) continue;
    const [, type, objectId] = entry.slice(0, tab).split(' ');
    if (type === 'blob' && objectId) blobs.set(entry.slice(tab + 1), objectId);
  }
  return blobs;
}

/**
 * sha256 of each lockfile the commit has at its root. One `git ls-tree` per new commit; a lockfile's
 * content is read only when its blob is new to this worker, so a campaign's runs, which rarely touch
 * their lockfiles, capture their environment without reading them again.
 */
export function lockfileHashes(repo: string, commit: string): Promise<Record<string, string>> {
  return remember(byCommit, `${repo}\0${commit}`, async () => {
    const blobs = blobsInTree(await git(repo, ['ls-tree', '-z', commit, '--', ...LOCKFILES]));
    const hashes: Record<string, string> = {};
    for (const name of LOCKFILES) {
      const objectId = blobs.get(name);
      if (!objectId) continue;
      hashes[name] = await remember(byBlob, objectId, async () => {
        // The exact bytes (final newline included), so the hash is the file's `sha256sum`.
        const { stdout } = await execa('git', ['-C', repo, 'cat-file', 'blob', objectId], {
          encoding: 'buffer',
          stripFinalNewline: false,
          timeout: 120_000,
        });
        return crypto.createHash('sha256').update(stdout).digest('hex');
      });
    }
    return hashes;
  });
}
