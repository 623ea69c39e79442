import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

/** A git on PATH that notes each call, so a test sees which git processes the code under test started. */
export interface GitCalls {
  /** The git commands run since the last call (the log is cleared). */
  taken(): Promise<string[]>;
  /** PATH as it was before. */
  restore(): void;
}

/** Puts a noting git first on PATH, in `dir` (the test's own directory). */
export async function noteGitCalls(dir: string): Promise<GitCalls> {
  const realPath = process.env.PATH;
  const bin = path.join(dir, '.bin');
  const log = path.join(dir, '.git-calls');
  const realGit = (await execa('sh', ['-c', 'command -v git'])).stdout;
  await fs.mkdir(bin);
  await fs.writeFile(path.join(bin, 'git'), `#!/bin/sh\necho "$*" >> '${log}'\nexec '${realGit}' "$@"\n`, {
    mode: 0o755,
  });
  process.env.PATH = `${bin}${path.delimiter}${realPath}`;
  return {
    async taken() {
      const text = await fs.readFile(log, 'utf8').catch(() => '');
      await fs.writeFile(log, '');
      return text.split('\n').filter(Boolean);
    },
    restore: () => (process.env.PATH = realPath),
  };
}
