import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replacePrivateFile } from '../../src/security/files.js';

let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-replace-'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('replacePrivateFile', () => {
  // A let-go watch and the worker that re-attached its run both write the run's outcome.
  it('lets writers race: one of them wins whole, none fails, nothing is left beside the file', async () => {
    const file = path.join(dir, 'outcome.json');
    const writers = Array.from({ length: 20 }, (_, i) => JSON.stringify({ writer: i, pad: 'x'.repeat(4096) }));
    await Promise.all(writers.map((text) => replacePrivateFile(file, text)));
    expect(writers).toContain(await fs.readFile(file, 'utf8'));
    expect(await fs.readdir(dir)).toEqual(['outcome.json']);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
  });
});
