import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  commandInTree,
  confinedRelative,
  isInside,
  resolveUnderRoot,
  symlinkTargetInTree,
} from '../../src/gpu-worker/confine.js';

describe('confinedRelative', () => {
  it.each([
    ['train.py', 'train.py'],
    ['./train.py', 'train.py'],
    ['scripts/run.sh', 'scripts/run.sh'],
    ['scripts//run.sh', 'scripts/run.sh'],
    ['a/./b/', 'a/b'],
    ['fineweb@v3', 'fineweb@v3'],
    ['a/../b', 'b'],
  ])('%s stays inside as %s', (reference, expected) => {
    expect(confinedRelative(reference)).toBe(expected);
  });

  it.each([
    '../../etc/passwd',
    '..',
    '.',
    '',
    '/etc/shadow',
    '/usr/bin/python3',
    '~/x',
    'a/../../b',
    '..\\..\\windows',
    'C:/x',
    'scripts/../../bin/sh',
  ])('%s is refused', (reference) => {
    expect(confinedRelative(reference)).toBeNull();
  });
});

describe('isInside and symlinks stored in a commit', () => {
  it('compares resolved paths, not prefixes', () => {
    expect(isInside('/srv/data', '/srv/data')).toBe(true);
    expect(isInside('/srv/data', '/srv/data/a/b')).toBe(true);
    expect(isInside('/srv/data', '/srv/data2/x')).toBe(false);
    expect(isInside('/srv/data', '/srv')).toBe(false);
    expect(isInside('/srv/data', '/srv/data/..foo')).toBe(true);
  });

  it('a link target counts from the link directory and must stay in the tree', () => {
    expect(symlinkTargetInTree('bin/run', '../scripts/run.sh')).toBe('scripts/run.sh');
    expect(symlinkTargetInTree('run', 'train.py')).toBe('train.py');
    expect(symlinkTargetInTree('bin/run', '../../outside')).toBeNull();
    expect(symlinkTargetInTree('run', '/bin/sh')).toBeNull();
  });
});

describe('commandInTree', () => {
  it('runs a program named by its repository path from the worktree, and a bare name from PATH', () => {
    expect(commandInTree(['scripts/train.sh', '--fast'], '/w/runs/e1/tree')).toEqual([
      '/w/runs/e1/tree/scripts/train.sh',
      '--fast',
    ]);
    expect(commandInTree(['./train.sh'], '/w/tree')).toEqual(['/w/tree/train.sh']);
    expect(commandInTree(['uv', 'run', 'train.py'], '/w/tree')).toEqual(['uv', 'run', 'train.py']);
    expect(() => commandInTree(['../../bin/sh'], '/w/tree')).toThrow(/not inside the repository/);
  });
});

describe('resolveUnderRoot (datasets and checkpoints roots on the worker)', () => {
  let root: string;
  let outside: string;
  beforeAll(async () => {
    const base = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-confine-'));
    root = path.join(base, 'datasets');
    outside = path.join(base, 'secret');
    await fs.mkdir(path.join(root, 'fineweb'), { recursive: true });
    await fs.mkdir(outside);
    await fs.writeFile(path.join(outside, 'passwd'), 'x');
    await fs.symlink(outside, path.join(root, 'escape'));
    await fs.symlink(path.join(root, 'fineweb'), path.join(root, 'alias'));
  });
  afterAll(async () => fs.rm(path.dirname(root), { recursive: true, force: true }));

  it('finds what is under the root, through symlinks that stay inside', async () => {
    expect(await resolveUnderRoot(root, 'fineweb')).toEqual({
      ok: true,
      location: await fs.realpath(path.join(root, 'fineweb')),
    });
    expect(await resolveUnderRoot(root, 'alias')).toMatchObject({ ok: true });
  });

  it('refuses escapes by path and by symlink, and says when something is missing', async () => {
    expect(await resolveUnderRoot(root, '../secret/passwd')).toMatchObject({ ok: false, problem: 'escapes' });
    expect(await resolveUnderRoot(root, path.join(outside, 'passwd'))).toMatchObject({ ok: false, problem: 'escapes' });
    expect(await resolveUnderRoot(root, 'escape/passwd')).toMatchObject({ ok: false, problem: 'symlink_escape' });
    expect(await resolveUnderRoot(root, 'nope')).toMatchObject({ ok: false, problem: 'missing' });
  });
});
