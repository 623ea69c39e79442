import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { EXPCTL } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';

// Configuration and permission problems, as an agent meets them from its own repository: one
// error object on stdout and an exit code that says what kind of problem it is, never exit 1.
let dir: string;
let repo: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-cli-errors-'));
  ({ repo } = await makeRepo());
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rm(repo, { recursive: true, force: true });
});

/** `expctl ARGS` from the agent's repository, with only `env` of expctl's settings (no stack pointer). */
function expctl(env: Record<string, string>, ...args: string[]) {
  return execa(process.execPath, [EXPCTL, ...args], {
    cwd: repo,
    reject: false,
    env: {
      EXPCTL_HOME: '',
      EXPCTL_KEY_FILE: '',
      EXPCTL_CREDENTIAL_FILE: '',
      TEMPORAL_ADDRESS: '',
      XDG_STATE_HOME: path.join(dir, 'no-stack-state'),
      ...env,
    },
  });
}
const RUN = ['run', '--tag', 'errs', '--hypothesis', 'h', '--category', 'other', '--', 'python3', 'train.py'];

describe('errors an agent can read', () => {
  it('prints the version', async () => {
    const version = JSON.parse(await fs.readFile(new URL('../../package.json', import.meta.url), 'utf8')).version;
    const result = await expctl({}, '--version');
    expect(result.exitCode).toBe(0);
    expect(result.stdout.trim()).toBe(version);
  });

  it('with no stack anywhere: permission_denied (exit 6), saying how to start or point at one', async () => {
    const result = await expctl({}, 'tag', 'create', 'ngram-01', '--json');
    expect(result.exitCode).toBe(6);
    const error = JSON.parse(result.stdout) as { error: string; message: string };
    expect(error.error).toBe('permission_denied');
    expect(error.message).toContain(`no payload keyring at ${path.join(repo, '.expctl', 'keys', 'payload-keys.json')}`);
    expect(error.message).toContain('No running expctl stack was found for this user');
    expect(error.message).toContain('`expctl dev` (`npm start` in the expctl checkout)');
    expect(error.message).toMatch(/EXPCTL_HOME=<its state directory>, or TEMPORAL_ADDRESS=HOST:PORT/);
    expect(result.stderr).toContain('expctl: no payload keyring at');
  });

  it('a stack that does not answer: unavailable (exit 4), naming the address and where it came from', async () => {
    const result = await expctl(
      { TEMPORAL_ADDRESS: '127.0.0.1:1', EXPCTL_KEY_FILE: inject('keyFile') },
      'show',
      'exp-x',
      '--json',
    );
    expect(result.exitCode).toBe(4);
    expect(JSON.parse(result.stdout)).toEqual({
      error: 'unavailable',
      message: expect.stringMatching(/^cannot reach the Temporal server at 127\.0\.0\.1:1 \(TEMPORAL_ADDRESS\)/),
    });
  });

  it('a submitter without a credential: permission_denied, not validation_failed', async () => {
    const missing = path.join(dir, 'no-credential.json');
    const settings = {
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      EXPCTL_KEY_FILE: inject('keyFile'),
      EXPCTL_CREDENTIAL_FILE: missing,
    };
    const direct = await expctl(settings, ...RUN);
    expect(direct.exitCode).toBe(6);
    expect(JSON.parse(direct.stdout)).toEqual({
      error: 'permission_denied',
      message: expect.stringContaining(`no credential at ${missing}`),
    });
    // Through a fleet remote the push is signed first: the same refusal, before anything is pushed.
    const remote = await expctl({ ...settings, EXPCTL_FLEET_REMOTE: 'expctl+http://127.0.0.1:1/fleet.git' }, ...RUN);
    expect(remote.exitCode).toBe(6);
    expect(JSON.parse(remote.stdout)).toMatchObject({ error: 'permission_denied' });
  });

  it('a setting that cannot be used: invalid_configuration (exit 2), naming it', async () => {
    const settings = { EXPCTL_HOME: path.join(dir, 'home'), EXPCTL_TEMPORAL_PORT: 'seven' };
    const result = await expctl(settings, 'dev', '--no-demo');
    expect(result.exitCode).toBe(2);
    expect(JSON.parse(result.stdout)).toEqual({
      error: 'invalid_configuration',
      message: 'EXPCTL_TEMPORAL_PORT must be a port number between 1 and 65535, got "seven"',
    });
  });
});
