import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { commitAll, makeRepo } from './repo.js';

/**
 * Batch variants of the fixture train.py: each variant is one commit on the base that changes
 * variant.txt, whose `NAME=VALUE` pairs variant.py sets before it runs train.py.
 */
const VARIANT_SCRIPT = `import os, runpy
for pair in open("variant.txt").read().split():
    name, value = pair.split("=", 1)
    os.environ[name] = value
runpy.run_path("train.py", run_name="__main__")
`;
export const VARIANT_COMMAND = ['python3', 'variant.py'];

/** A repository whose base runs with `baseSettings` (default: val_bpb 1.0); `script` is its train.py. */
export async function makeVariantRepo(
  baseSettings = 'VAL_BPB=1.0',
  script?: string,
): Promise<{ repo: string; commit: string }> {
  return makeRepo({ 'variant.py': VARIANT_SCRIPT, 'variant.txt': `${baseSettings}\n` }, script);
}

/** A commit on `base` that changes variant.txt to `settings`; the branch stays where it was. */
export async function variantCommit(repo: string, base: string, settings: string, subject: string): Promise<string> {
  const git = (...args: string[]) => execa('git', ['-C', repo, ...args]);
  await git('checkout', '-q', '--detach', base);
  await fs.writeFile(path.join(repo, 'variant.txt'), `${settings}\n`);
  const sha = await commitAll(repo, subject);
  await git('checkout', '-q', 'main');
  return sha;
}
