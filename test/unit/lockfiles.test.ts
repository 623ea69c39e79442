import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobsInTree, lockfileHashes } from '../../src/gpu-worker/lockfiles.js';
import { noteGitCalls, type GitCalls } from '../helpers/git-calls.js';

let dir: string;
let git: GitCalls;

async function commitAll(message: string): Promise<string> {
  await execa('git', ['-C', dir, 'add', '-A']);
  await execa('git', ['-C', dir, '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', message]);
  return (await execa('git', ['-C', dir, 'rev-parse', 'HEAD'])).stdout;
}

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-lockfiles-'));
  await execa('git', ['init', '-q', dir]);
  git = await noteGitCalls(dir);
});

afterAll(async () => {
  git.restore();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('lockfile hashes for the record', () => {
  it('parses blobs from ls-tree -z output and skips trees', () => {
    const output = '100644 blob aaa\tuv.lock\u0000040000 tree bbb\tpyproject.toml\u0000';
    expect([...blobsInTree(output)]).toEqual([['uv.lock', 'aaa']]);
  });

  it("hashes each root lockfile's exact bytes, reading a lockfile only when its blob is new", async () => {
    const uvLock = 'version = 1\n\n[[package]]\nname = "torch"\n';
    await fs.writeFile(path.join(dir, 'uv.lock'), uvLock);
    await fs.writeFile(path.join(dir, 'train.py'), 'print(1)\n');
    // A directory that carries a lockfile's name is not a lockfile.
    await fs.mkdir(path.join(dir, 'environment.yml'));
    await fs.writeFile(path.join(dir, 'environment.yml', 'x'), 'y');
    const first = await commitAll('first');
    await git.taken();

    const hashes = await lockfileHashes(dir, first);
    expect(hashes).toEqual({ 'uv.lock': crypto.createHash('sha256').update(uvLock).digest('hex') });
    expect((await git.taken()).map((call) => call.split(' ')[2])).toEqual(['ls-tree', 'cat-file']);

    // The same commit again: no git at all.
    expect(await lockfileHashes(dir, first)).toEqual(hashes);
    expect(await git.taken()).toEqual([]);

    // A new commit that leaves uv.lock alone: one ls-tree, no read.
    await fs.writeFile(path.join(dir, 'train.py'), 'print(2)\n');
    const second = await commitAll('second');
    await git.taken();
    expect(await lockfileHashes(dir, second)).toEqual(hashes);
    expect((await git.taken()).map((call) => call.split(' ')[2])).toEqual(['ls-tree']);

    // A new lockfile is read and hashed.
    await fs.writeFile(path.join(dir, 'requirements.txt'), 'numpy==2.1.0\n');
    const third = await commitAll('third');
    await git.taken();
    expect(await lockfileHashes(dir, third)).toEqual({
      ...hashes,
      'requirements.txt': crypto.createHash('sha256').update('numpy==2.1.0\n').digest('hex'),
    });
    expect((await git.taken()).map((call) => call.split(' ')[2])).toEqual(['ls-tree', 'cat-file']);
  });

  it('does not remember a failure', async () => {
    await expect(lockfileHashes(dir, 'f'.repeat(40))).rejects.toThrow();
    await git.taken();
    await expect(lockfileHashes(dir, 'f'.repeat(40))).rejects.toThrow();
    expect((await git.taken()).length).toBe(1);
  });
});
