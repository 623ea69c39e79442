import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { FIXTURES } from './stack.js';

/** Fixed identity and dates: the same files always give the same commit SHA. */
const GIT_ENV = {
  GIT_AUTHOR_NAME: 'test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
  GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z',
  GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z',
};

/** Commits everything in `repo` with a fixed identity and date; returns the SHA. */
export async function commitAll(repo: string, message: string): Promise<string> {
  await execa('git', ['-C', repo, 'add', '-A']);
  await execa('git', ['-C', repo, 'commit', '-qm', message], { env: GIT_ENV });
  return (await execa('git', ['-C', repo, 'rev-parse', 'HEAD'])).stdout.trim();
}

/** A throwaway git repository with a training script committed (deterministically); returns its path and HEAD. */
export async function makeRepo(
  extraFiles: Record<string, string> = {},
  script = path.join(FIXTURES, 'scripts', 'train.py'),
): Promise<{ repo: string; commit: string }> {
  const repo = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-repo-'));
  await fs.copyFile(script, path.join(repo, 'train.py'));
  for (const [name, content] of Object.entries(extraFiles)) await fs.writeFile(path.join(repo, name), content);
  const git = (...args: string[]) => execa('git', ['-C', repo, ...args]);
  await git('init', '-q', '-b', 'main');
  await commitAll(repo, 'baseline');
  const { stdout } = await git('rev-parse', 'HEAD');
  return { repo, commit: stdout.trim() };
}

/**
 * Two new commits on HEAD whose SHAs share their first 4 hex digits (an ambiguous prefix): commit
 * objects are hashed here until two collide, and only those two are made, with git's own plumbing.
 */
export async function commitsSharingPrefix(repo: string): Promise<[string, string]> {
  const git = (...args: string[]) => execa('git', ['-C', repo, ...args], { env: GIT_ENV });
  const tree = (await git('rev-parse', 'HEAD^{tree}')).stdout.trim();
  const parent = (await git('rev-parse', 'HEAD')).stdout.trim();
  const stamp = `${Date.parse(GIT_ENV.GIT_COMMITTER_DATE) / 1000} +0000`;
  const body = (i: number) =>
    `tree ${tree}\nparent ${parent}\nauthor test <test@example.com> ${stamp}\ncommitter test <test@example.com> ${stamp}\n\nv${i}\n`;
  const sha = (text: string) =>
    crypto
      .createHash('sha1')
      .update(`commit ${Buffer.byteLength(text)}\0${text}`)
      .digest('hex');
  const seen = new Map<string, number>();
  for (let i = 0; ; i++) {
    const prefix = sha(body(i)).slice(0, 4);
    const earlier = seen.get(prefix);
    if (earlier === undefined) {
      seen.set(prefix, i);
      continue;
    }
    const made = await Promise.all(
      [earlier, i].map(async (n) => (await git('commit-tree', tree, '-p', parent, '-m', `v${n}`)).stdout.trim()),
    );
    return made as [string, string];
  }
}

export { processAlive } from '../../src/shared/processes.js';
