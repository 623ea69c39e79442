import crypto from 'node:crypto';
import { execa } from 'execa';
import { ContentMemo } from './content-memo.js';
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
const byCommit = new ContentMemo<Record<string, string>>(512);
const byBlob = new ContentMemo<string>(512);

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
  return byCommit.get(`${repo}\0${commit}`, async () => {
    const blobs = blobsInTree(await git(repo, ['ls-tree', '-z', commit, '--', ...LOCKFILES]));
    const hashes: Record<string, string> = {};
    for (const name of LOCKFILES) {
      const objectId = blobs.get(name);
      if (!objectId) continue;
      hashes[name] = await byBlob.get(objectId, async () => {
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
