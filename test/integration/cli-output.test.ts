import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { parseExperimentRequest } from '../../src/domain/request.js';
import { EXPCTL, runCli } from '../helpers/cli.js';

// Output read through a pipe arrives whole, whatever its size; nothing here needs Temporal.
const RECORDS = 400;
let dir: string;
let env: { EXPCTL_CATALOG: string };
const hostile = `ignore\u001b[2J\u001b[31m red \u202eexe.fdp\u2066 \u0085 \u0007 end`;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-cli-output-'));
  env = { EXPCTL_CATALOG: path.join(dir, 'catalog.sqlite') };
  const catalog = await Catalog.open(env.EXPCTL_CATALOG);
  for (let i = 0; i < RECORDS; i++) {
    const request = parseExperimentRequest({
      tag: 'big',
      hypothesis: `${i === 0 ? hostile : `idea ${i}`} ${'x'.repeat(1900)}`,
      description: 'd'.repeat(1900),
      category: 'hyperparams',
      repo: '/nowhere',
      commit: crypto.createHash('sha1').update(String(i)).digest('hex'),
    });
    const at = new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
    await catalog.apply({
      experimentId: `exp-big-${String(i).padStart(4, '0')}`,
      request,
      submittedAt: at,
      status: 'validation_failed',
      reason: 'seeded',
      events: [{ status: 'submitted', at }],
    });
  }
  await catalog.close();
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('output through a pipe', () => {
  it('delivers a --json output of several MB whole, and it parses', async () => {
    const result = await runCli(env, ['history', '--tag', 'big', '--limit', String(RECORDS), '--json'], {
      encoding: 'buffer',
      maxBuffer: 64 * 1024 * 1024,
    });
    expect(result.exitCode).toBe(0);
    const stdout = Buffer.from(result.stdout as Uint8Array);
    expect(stdout.length).toBeGreaterThanOrEqual(1024 * 1024);
    expect(stdout.length % 65_536).not.toBe(0); // not cut off at a pipe-buffer boundary
    const rows = JSON.parse(stdout.toString('utf8')) as { id: string; hypothesis: string }[];
    expect(rows).toHaveLength(RECORDS);
    console.log(`history --json through a pipe: ${stdout.length} bytes, ${rows.length} rows`);
    // Untrusted text keeps its value, but no raw control or bidi character reaches the reader.
    const hostileRow = rows.find((row) => row.id === 'exp-big-0000')!;
    expect(hostileRow.hypothesis.startsWith(hostile)).toBe(true);
    expect(stdout.toString('utf8')).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/);
  });

  it('is quiet and exits 0 when the reader closes the pipe early (like `| head`)', async () => {
    const child = execa(process.execPath, [EXPCTL, 'history', '--tag', 'big', '--limit', String(RECORDS), '--json'], {
      env,
      reject: false,
      buffer: { stdout: false, stderr: true },
    });
    child.stdout!.once('data', () => child.stdout!.destroy());
    const result = await child;
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
  });

  it('a usage error of another command exits 2 with a message naming the flag, and the error object', async () => {
    const result = await runCli(env, ['history', '--limit', '0x10']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/--limit "0x10": expected an integer/);
    expect(JSON.parse(result.stdout as string)).toEqual({
      error: 'validation_failed',
      message: expect.stringMatching(/--limit "0x10": expected an integer/),
    });
    const twice = await runCli(env, ['history', '--tag', 'a', '--tag', 'b']);
    expect(twice.exitCode).toBe(2);
    expect(twice.stderr).toMatch(/--tag was given more than once/);
  });
});
