import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

// On one host without a fleet remote, the worker reads the submitter's repository and writes only
// its own cache: the agent's `git worktree list`, refs and objects stay as the agent left them.
const HOST = 'onehost';
const TRAIN = `import os, time
while not os.path.exists(os.environ["WAIT_FOR"]):
    time.sleep(0.1)
print("---")
print("val_bpb:          1.000000")
`;

let stack: TestStack;
let source: { repo: string; commit: string };
let userTree: string;

const cliEnv = () => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
});
const git = async (...args: string[]) => (await execa('git', ['-C', source.repo, ...args])).stdout;

/** Every file under the repository's .git, by path, with its mode and a digest of its bytes. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of await fs.readdir(dir, { recursive: true })) {
    const file = path.join(dir, name);
    const stat = await fs.lstat(file);
    if (stat.isDirectory()) {
      out[`${name}/`] = stat.mode.toString(8);
      continue;
    }
    const bytes = stat.isSymbolicLink() ? Buffer.from(await fs.readlink(file)) : await fs.readFile(file);
    out[name] = `${stat.mode.toString(8)} ${crypto.createHash('sha256').update(bytes).digest('hex')}`;
  }
  return out;
}

/** The paths `git worktree list` shows in the submitter's repository. */
async function worktreePaths(): Promise<string[]> {
  const listed = await git('worktree', 'list', '--porcelain');
  return listed
    .split('\n')
    .filter((line) => line.startsWith('worktree '))
    .map((line) => line.slice('worktree '.length));
}

beforeAll(async () => {
  stack = await startStack({ name: 'submitter', host: HOST, cpuSlots: 2 });
  source = await makeRepo({ 'train.py': TRAIN });
  // The agent has a worktree of its own: it must stay the only one besides the main checkout.
  userTree = `${source.repo}-agent-tree`;
  await git('worktree', 'add', '-q', '--detach', userTree, 'HEAD');
}, 300_000);
afterAll(async () => {
  await stack?.stop();
  if (source) for (const dir of [source.repo, userTree]) await fs.rm(dir, { recursive: true, force: true });
});

describe('the submitter repository without a fleet remote', () => {
  it('is never written: no worktree, ref or object of expctl in its .git, during the run and after', async () => {
    const gitDir = path.join(source.repo, '.git');
    const before = await snapshot(gitDir);
    const own = [await fs.realpath(source.repo), await fs.realpath(userTree)];
    expect(await worktreePaths()).toEqual(own);

    const go = path.join(stack.workDir, 'go');
    const running = runCli(
      cliEnv(),
      [
        'run',
        '--tag',
        'submitter',
        '--hypothesis',
        'the repository is left alone',
        '--category',
        'other',
        '--time-budget',
        '60',
        '--env',
        `WAIT_FOR=${go}`,
        '--json',
        '--',
        'python3',
        'train.py',
      ],
      { cwd: source.repo },
    );
    // While it trains: the run's worktree is the worker's, made from its own cache.
    let id = '';
    await waitFor(async () => {
      const runs = await fs.readdir(path.join(stack.workDir, HOST, 'runs')).catch(() => [] as string[]);
      id = runs.find((run) => run.startsWith('exp-submitter-')) ?? '';
      return (
        id !== '' &&
        (await fs.readFile(runFiles(path.join(stack.workDir, HOST), id).started, 'utf8').catch(() => '')) !== ''
      );
    }, 120_000);
    const tree = runFiles(path.join(stack.workDir, HOST), id).tree;
    const treeGit = (await execa('git', ['-C', tree, 'rev-parse', '--git-common-dir'])).stdout;
    const cache = path.resolve(tree, treeGit);
    expect(cache.startsWith(path.join(stack.workDir, HOST, 'repos') + path.sep)).toBe(true);
    expect((await execa('git', ['-C', tree, 'rev-parse', 'HEAD'])).stdout).toBe(source.commit);
    expect(await worktreePaths()).toEqual(own);
    expect(await snapshot(gitDir)).toEqual(before);

    await fs.writeFile(go, '');
    const run = await running;
    const result = JSON.parse(run.stdout as string) as ExperimentResult;
    expect(result).toMatchObject({ experiment_id: id, status: 'completed', metric: 1 });

    // After it: byte for byte as before, and `git worktree list` shows the agent's own only.
    expect(await snapshot(gitDir)).toEqual(before);
    expect(await worktreePaths()).toEqual(own);
    expect(await git('for-each-ref', '--format=%(refname)')).toBe('refs/heads/main');
  });
});
