import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureTemporalCli, TemporalCliUnavailableError } from '../../src/temporal/temporal-cli.js';

describe('ensureTemporalCli', () => {
  it('uses $TEMPORAL_CLI when it is an executable', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-cli-'));
    const fake = path.join(dir, 'temporal');
    await fs.writeFile(fake, '#!/bin/sh\necho fake\n', { mode: 0o755 });
    await expect(ensureTemporalCli({ env: { ...process.env, TEMPORAL_CLI: fake } })).resolves.toBe(fake);
  });

  it('refuses a $TEMPORAL_CLI that is not executable', async () => {
    await expect(ensureTemporalCli({ env: { ...process.env, TEMPORAL_CLI: '/nonexistent/temporal' } })).rejects.toThrow(
      'TEMPORAL_CLI=/nonexistent/temporal is not an executable file.',
    );
  });

  it('reuses the per-user cache without building again', async () => {
    const cache = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-cache-'));
    const cached = path.join(cache, 'expctl', 'temporal-cli', '1.5.1', 'temporal');
    await fs.mkdir(path.dirname(cached), { recursive: true });
    await fs.writeFile(cached, '#!/bin/sh\n', { mode: 0o755 });
    const env = { XDG_CACHE_HOME: cache, PATH: '/nonexistent', HOME: cache };
    await expect(ensureTemporalCli({ env, log: () => undefined })).resolves.toBe(cached);
  });

  it('without Go and without a download says how to provide the CLI', async () => {
    const cache = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-cache-'));
    // No `go` on PATH, and a download address where nothing listens.
    const env = {
      XDG_CACHE_HOME: cache,
      PATH: '/nonexistent',
      HOME: cache,
      EXPCTL_TEMPORAL_DOWNLOAD_BASE: 'http://127.0.0.1:9',
    };
    const attempt = ensureTemporalCli({ env, log: () => undefined });
    await expect(attempt).rejects.toBeInstanceOf(TemporalCliUnavailableError);
    await expect(attempt).rejects.toThrow(
      /No Go toolchain on PATH and the download of .* failed .*set TEMPORAL_CLI=\/path\/to\/temporal/s,
    );
  });
});
