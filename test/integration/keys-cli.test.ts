import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/shared/ports.js';
import { EXPCTL, outputOf } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

let home: string;
/** A state directory of its own; not the test run's keyring. */
const env = () => ({ EXPCTL_HOME: home, EXPCTL_KEY_FILE: '', TEMPORAL_ADDRESS: '127.0.0.1:1' });
const expctl = (...args: string[]) => execa(process.execPath, [EXPCTL, ...args], { env: env(), reject: false });

beforeAll(async () => {
  home = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-keys-cli-'));
});
afterAll(async () => fs.rm(home, { recursive: true, force: true }));

describe('expctl keys and codec-server', () => {
  it('refuses to start a worker without a keyring, saying how to get one (permission_denied, exit 6)', async () => {
    const worker = await expctl('worker', '--cpu-slots', '1');
    expect(worker.exitCode).toBe(6);
    expect(JSON.parse(worker.stdout)).toEqual({
      error: 'permission_denied',
      message: expect.stringContaining('no payload keyring at'),
    });
    expect(worker.stderr).toContain(`no payload keyring at ${path.join(home, 'keys', 'payload-keys.json')}`);
    expect(worker.stderr).toContain('`expctl keys init`');
    expect(worker.stderr).toMatch(/EXPCTL_KEY_FILE.*EXPCTL_KEY_COMMAND/s);
  });

  it('creates, rotates and lists keys, never printing one', async () => {
    const init = await expctl('keys', 'init', '--json');
    expect(init.exitCode).toBe(0);
    const { file, current: first } = outputOf('keys', init) as { file: string; current: string };
    expect(file).toBe(path.join(home, 'keys', 'payload-keys.json'));
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect((await expctl('keys', 'init')).stderr).toMatch(/already exists/);

    const rotate = await expctl('keys', 'rotate', '--json');
    expect(outputOf('keys', rotate)).toMatchObject({ previous: first });
    const list = await expctl('keys', 'list', '--json');
    const listed = outputOf('keys', list) as { current: string; keys: string[] };
    expect(listed.keys).toEqual([first, JSON.parse(rotate.stdout).current]);
    const stored = JSON.parse(await fs.readFile(file, 'utf8')) as { keys: Record<string, string> };
    for (const key of Object.values(stored.keys))
      for (const output of [init, rotate, list]) expect(output.stdout + output.stderr).not.toContain(key);
  });

  it('serves the remote codec for a given UI origin and prints the endpoint to paste into the UI', async () => {
    const port = await freePort();
    const child = execa(
      process.execPath,
      [EXPCTL, 'codec-server', '--port', String(port), '--ui-origin', 'https://temporal.example.com/namespaces'],
      { env: env(), reject: false, all: true },
    );
    try {
      let output = '';
      child.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      await waitFor(async () => /Codec endpoint/.test(output), 60_000);
      const endpoint = new RegExp(`http://127\\.0\\.0\\.1:${port}/[A-Za-z0-9_-]+`).exec(output)?.[0];
      const token = (await fs.readFile(path.join(home, 'codec-server.token'), 'utf8')).trim();
      expect(endpoint).toBe(`http://127.0.0.1:${port}/${token}`);
      const response = await fetch(`${endpoint}/decode`, {
        method: 'POST',
        headers: { Origin: 'https://temporal.example.com', 'Content-Type': 'application/json' },
        body: JSON.stringify({ payloads: [] }),
      });
      expect(response.status).toBe(200);
      expect(response.headers.get('access-control-allow-origin')).toBe('https://temporal.example.com');
    } finally {
      child.kill('SIGTERM');
      await child;
    }
  });
});
