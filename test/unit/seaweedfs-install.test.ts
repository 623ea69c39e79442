import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ensureSeaweedFs,
  findSeaweedFs,
  SEAWEEDFS_VERSION,
  SeaweedFsUnavailableError,
} from '../../src/store/seaweedfs.js';

async function executable(dir: string, name: string): Promise<string> {
  const file = path.join(dir, name);
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, '#!/bin/sh\necho fake\n', { mode: 0o755 });
  return file;
}

describe('ensureSeaweedFs', () => {
  it('uses $EXPCTL_SEAWEEDFS when it is an executable, and refuses one that is not', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-weed-'));
    const fake = await executable(dir, 'weed');
    await expect(ensureSeaweedFs({ env: { EXPCTL_SEAWEEDFS: fake } })).resolves.toBe(fake);
    await expect(ensureSeaweedFs({ env: { EXPCTL_SEAWEEDFS: '/nonexistent/weed' } })).rejects.toThrow(
      'EXPCTL_SEAWEEDFS=/nonexistent/weed is not an executable file.',
    );
  });

  it('reuses the per-user cache of the pinned version without building again', async () => {
    const cache = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-cache-'));
    const cached = await executable(cache, path.join('expctl', 'seaweedfs', SEAWEEDFS_VERSION, 'weed'));
    const env = { XDG_CACHE_HOME: cache, PATH: '/nonexistent', HOME: cache };
    await expect(ensureSeaweedFs({ env, log: () => undefined })).resolves.toBe(cached);
  });

  it('without Go says how to provide it', async () => {
    const cache = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-cache-'));
    const attempt = ensureSeaweedFs({ env: { XDG_CACHE_HOME: cache, PATH: '/nonexistent', HOME: cache } });
    await expect(attempt).rejects.toBeInstanceOf(SeaweedFsUnavailableError);
    await expect(attempt).rejects.toThrow(
      /No Go toolchain on PATH to build SeaweedFS .*install Go .* or set EXPCTL_SEAWEEDFS=\/path\/to\/weed\./,
    );
  });
});

describe('findSeaweedFs (what the tests take)', () => {
  it('takes `weed` on PATH where there is no cached one, and is null where there is none', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-weed-'));
    const onPath = await executable(path.join(dir, 'bin'), 'weed');
    const env = { XDG_CACHE_HOME: path.join(dir, 'cache'), HOME: dir };
    await expect(findSeaweedFs({ ...env, PATH: path.join(dir, 'bin') })).resolves.toBe(onPath);
    await expect(findSeaweedFs({ ...env, PATH: '/nonexistent' })).resolves.toBeNull();
  });
});
