import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { FIXTURES } from './stack.js';

/** A throwaway git repository with the test training script committed; returns its path and HEAD. */
export async function makeRepo(extraFiles: Record<string, string> = {}): Promise<{ repo: string; commit: string }> {
  const repo = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-repo-'));
  await fs.copyFile(path.join(FIXTURES, 'scripts', 'train.py'), path.join(repo, 'train.py'));
  for (const [name, content] of Object.entries(extraFiles)) await fs.writeFile(path.join(repo, name), content);
  const git = (...args: string[]) => execa('git', ['-C', repo, ...args]);
  await git('init', '-q');
  await git('add', '-A');
  await git('-c', 'user.name=test', '-c', 'user.email=test@example.com', 'commit', '-qm', 'baseline');
  const { stdout } = await git('rev-parse', 'HEAD');
  return { repo, commit: stdout.trim() };
}

export { processAlive } from '../../src/shared/processes.js';
