import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addWorktree, pointsBack, removeWorktree, worktreeAdminDir } from '../../src/gpu-worker/git.js';
import { noteGitCalls, type GitCalls } from '../helpers/git-calls.js';

let dir: string;
let cache: string;
let commit: string;
let git: GitCalls;

/** The worktree paths `git worktree list` shows for the cache (its own bare entry left out). */
async function listed(): Promise<string[]> {
  const { stdout } = await execa('git', ['-C', cache, 'worktree', 'list', '--porcelain']);
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('worktree '))
    .map((line) => line.slice('worktree '.length))
    .filter((tree) => tree !== cache);
}

beforeAll(async () => {
  dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-worktrees-')));
  const source = path.join(dir, 'source');
  await execa('git', ['init', '-q', source]);
  await fs.writeFile(path.join(source, 'train.py'), 'print(1)\n');
  await execa('git', ['-C', source, 'add', '-A']);
  await execa('git', ['-C', source, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'first']);
  commit = (await execa('git', ['-C', source, 'rev-parse', 'HEAD'])).stdout;
  cache = path.join(dir, 'cache');
  await execa('git', ['clone', '-q', '--bare', source, cache]);
  git = await noteGitCalls(dir);
});

afterAll(async () => {
  git.restore();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('run worktrees', () => {
  it('removes a tree and its registration without a git process, as `git worktree remove` would', async () => {
    const a = path.join(dir, 'runs', 'a', 'tree');
    const b = path.join(dir, 'runs', 'b', 'tree');
    await addWorktree(cache, commit, a);
    await addWorktree(cache, commit, b);
    await fs.writeFile(path.join(a, 'untracked.txt'), 'left by the run');
    expect(await listed()).toEqual([a, b]);
    await git.taken();

    await removeWorktree(cache, a);
    expect(await git.taken()).toEqual([]);
    await expect(fs.access(a)).rejects.toThrow();
    expect(await listed()).toEqual([b]);
    // git agrees nothing is left of it: nothing to prune, and the path takes a new tree.
    const { stdout } = await execa('git', ['-C', cache, 'worktree', 'prune', '--dry-run', '--verbose']);
    expect(stdout).toBe('');
    await addWorktree(cache, commit, a);
    expect(await fs.readFile(path.join(a, 'train.py'), 'utf8')).toBe('print(1)\n');
    await removeWorktree(cache, a);
    await removeWorktree(cache, b);
    expect(await listed()).toEqual([]);
  });

  it("leaves to git a tree whose .git names another tree's registration, and removes only its own", async () => {
    const a = path.join(dir, 'runs', 'c', 'tree');
    const b = path.join(dir, 'runs', 'd', 'tree');
    await addWorktree(cache, commit, a);
    await addWorktree(cache, commit, b);
    // A script in tree a pointed its .git at tree b's registration.
    await fs.writeFile(path.join(a, '.git'), await fs.readFile(path.join(b, '.git'), 'utf8'));
    await git.taken();

    await removeWorktree(cache, a);
    expect((await git.taken()).some((call) => call.includes('worktree remove'))).toBe(true);
    await expect(fs.access(a)).rejects.toThrow();
    expect(await listed()).toContain(b);
    expect(await fs.readFile(path.join(b, 'train.py'), 'utf8')).toBe('print(1)\n');
    await removeWorktree(cache, b);
    await execa('git', ['-C', cache, 'worktree', 'prune']);
    expect(await listed()).toEqual([]);
  });

  it('leaves a locked tree to git', async () => {
    const a = path.join(dir, 'runs', 'e', 'tree');
    await addWorktree(cache, commit, a);
    await execa('git', ['-C', cache, 'worktree', 'lock', a]);
    await git.taken();
    await removeWorktree(cache, a);
    expect((await git.taken()).some((call) => call.includes('worktree remove'))).toBe(true);
    await expect(fs.access(a)).rejects.toThrow();
  });

  it('reads the registration a .git file names only inside the repository’s worktrees', () => {
    expect(worktreeAdminDir('/c/repo', '/w/runs/a/tree', 'gitdir: /c/repo/worktrees/tree3\n')).toBe(
      '/c/repo/worktrees/tree3',
    );
    expect(worktreeAdminDir('/c/repo', '/w/runs/a/tree', 'gitdir: ../../../../c/repo/worktrees/tree\n')).toBe(
      '/c/repo/worktrees/tree',
    );
    expect(worktreeAdminDir('/c/repo', '/w/runs/a/tree', 'gitdir: /c/repo\n')).toBeNull();
    expect(worktreeAdminDir('/c/repo', '/w/runs/a/tree', 'gitdir: /c/repo/worktrees\n')).toBeNull();
    expect(worktreeAdminDir('/c/repo', '/w/runs/a/tree', 'gitdir: /c/repo/worktrees/t/../../hooks\n')).toBeNull();
    expect(worktreeAdminDir('/c/repo', '/w/runs/a/tree', 'gitdir: /other/worktrees/tree\n')).toBeNull();
    expect(worktreeAdminDir('/c/repo', '/w/runs/a/tree', 'not a pointer')).toBeNull();
    expect(pointsBack('/w/runs/a/tree/.git\n', '/w/runs/a/tree')).toBe(true);
    expect(pointsBack('/w/runs/b/tree/.git\n', '/w/runs/a/tree')).toBe(false);
    expect(pointsBack('', '/w/runs/a/tree')).toBe(false);
  });
});
