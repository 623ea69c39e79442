import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { errorCodeFor, EXIT_CODES } from '../../src/domain/exit-codes.js';
import { exitCodeFor } from '../../src/domain/experiment.js';
import { defaultCpuSlots } from '../../src/gpu-worker/discover.js';
import {
  locateStack,
  readStackPointer,
  removeStackPointer,
  stackPointerPath,
  writeStackPointer,
  type StackPointer,
} from '../../src/shared/stack.js';
import { identityOf } from '../../src/temporal/pid-file.js';
import { failureOf } from '../../src/cli/failure.js';
import { KeyringMissingError } from '../../src/security/keyring.js';
import { AccessError } from '../../src/security/access-error.js';
import { PayloadDecodeError } from '../../src/security/codec.js';
import { ConfigurationError } from '../../src/shared/settings.js';
import { StackUnreachableError } from '../../src/temporal/connection.js';
import { CliError } from '../../src/cli/output.js';

const dirs: string[] = [];
afterAll(() => dirs.forEach((dir) => fs.rmSync(dir, { recursive: true, force: true })));
function stateHome(): NodeJS.ProcessEnv {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-stack-lookup-'));
  dirs.push(dir);
  return { XDG_STATE_HOME: dir };
}

const pointerOf = (identity: { pid: number; startTime: string | null }): StackPointer => ({
  version: 1,
  ...identity,
  home: '/srv/expctl-home',
  address: '127.0.0.1:7233',
  namespace: 'default',
  uiUrl: 'http://localhost:8233',
  keyFile: '/srv/expctl-home/keys/payload-keys.json',
  catalog: '/srv/expctl-home/catalog.sqlite',
  codecEndpoint: null,
  startedAt: '2026-12-06T00:00:00.000Z',
});
/** This test process stands in for a running `expctl dev`. */
const live = () => pointerOf(identityOf(process.pid));

describe('the per-user stack pointer', () => {
  it('lives in $XDG_STATE_HOME/expctl, else ~/.local/state/expctl', () => {
    expect(stackPointerPath({ XDG_STATE_HOME: '/x/state' })).toBe('/x/state/expctl/stack.json');
    expect(stackPointerPath({ HOME: os.homedir() })).toBe(path.join(os.homedir(), '.local/state/expctl/stack.json'));
  });

  it('is written privately, read back while its expctl dev runs, and removed only by it', () => {
    const env = stateHome();
    expect(writeStackPointer(live(), env)).toBe(true);
    const file = stackPointerPath(env);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(readStackPointer(env)).toEqual(live());
    removeStackPointer(process.pid + 1, env);
    expect(fs.existsSync(file)).toBe(true);
    removeStackPointer(process.pid, env);
    expect(fs.existsSync(file)).toBe(false);
  });

  it('is stale once its process is gone or its pid was reused, and then is replaced', () => {
    const env = stateHome();
    // The same pid with another start time: a later process that got the pid, not the stack.
    const reused = pointerOf({ pid: process.pid, startTime: '1' });
    fs.mkdirSync(path.dirname(stackPointerPath(env)), { recursive: true });
    fs.writeFileSync(stackPointerPath(env), JSON.stringify(reused));
    expect(readStackPointer(env)).toBeUndefined();
    expect(locateStack(env).source).toBe('current directory');
    expect(writeStackPointer(live(), env)).toBe(true);
    expect(readStackPointer(env)?.startTime).toBe(identityOf(process.pid).startTime);
  });

  it('is kept by the first running stack: a second one does not take it over', () => {
    const env = stateHome();
    writeStackPointer(live(), env);
    const other = { ...pointerOf(identityOf(process.ppid)), home: '/elsewhere' };
    expect(writeStackPointer(other, env)).toBe(false);
    expect(readStackPointer(env)?.home).toBe('/srv/expctl-home');
  });

  it('ignores a file that is not a pointer', () => {
    const env = stateHome();
    fs.mkdirSync(path.dirname(stackPointerPath(env)), { recursive: true });
    fs.writeFileSync(stackPointerPath(env), '{"home": 1}');
    expect(readStackPointer(env)).toBeUndefined();
  });
});

describe('the lookup order', () => {
  const withPointer = (extra: NodeJS.ProcessEnv = {}) => {
    const env = { ...stateHome(), ...extra };
    writeStackPointer(live(), env);
    return env;
  };

  it('finds the running stack from any directory: its home, keyring, catalog and namespace', () => {
    expect(locateStack(withPointer())).toEqual({
      source: 'pointer',
      pointer: live(),
      settings: {
        EXPCTL_HOME: '/srv/expctl-home',
        TEMPORAL_NAMESPACE: 'default',
        EXPCTL_KEY_FILE: '/srv/expctl-home/keys/payload-keys.json',
        EXPCTL_CATALOG: '/srv/expctl-home/catalog.sqlite',
      },
    });
  });

  it('lets an explicit EXPCTL_HOME or another TEMPORAL_ADDRESS (or profile) win', () => {
    expect(locateStack(withPointer({ EXPCTL_HOME: '/mine' }))).toEqual({ source: 'environment', settings: {} });
    expect(locateStack(withPointer({ TEMPORAL_ADDRESS: 'ctl:7233' }))).toEqual({ source: 'environment', settings: {} });
    expect(locateStack(withPointer({ TEMPORAL_PROFILE: 'prod' })).source).toBe('environment');
    expect(locateStack(withPointer({ TEMPORAL_CONFIG_FILE: '/t.toml' })).source).toBe('environment');
  });

  it("uses the pointer's state for a TEMPORAL_ADDRESS that names its own server", () => {
    expect(locateStack(withPointer({ TEMPORAL_ADDRESS: '127.0.0.1:7233' })).settings.EXPCTL_HOME).toBe(
      '/srv/expctl-home',
    );
  });

  it('keeps the keyring, catalog and namespace the user set, and treats empty as unset', () => {
    const located = locateStack(
      withPointer({ EXPCTL_KEY_COMMAND: 'vault read', EXPCTL_CATALOG_URL: 'postgres://db/x', EXPCTL_HOME: '' }),
    );
    expect(located.settings).toEqual({ EXPCTL_HOME: '/srv/expctl-home', TEMPORAL_NAMESPACE: 'default' });
  });

  it('falls back to the current directory where nothing names a stack', () => {
    expect(locateStack(stateHome())).toEqual({ source: 'current directory', settings: {} });
    expect(locateStack({ ...stateHome(), TEMPORAL_ADDRESS: 'ctl:7233' }).source).toBe('environment');
  });
});

describe('the CPU-slot default', () => {
  it('runs a batch of two at once on a 2-core machine, and half the cores on bigger ones', () => {
    expect(defaultCpuSlots(1)).toBe(2);
    expect(defaultCpuSlots(2)).toBe(2);
    expect(defaultCpuSlots(5)).toBe(2);
    expect(defaultCpuSlots(16)).toBe(8);
  });
});

describe('exit codes and error objects', () => {
  it('keys every exit code by outcome, the run states included', () => {
    expect(EXIT_CODES).toEqual({
      decided: 0,
      internal_error: 1,
      validation_failed: 2,
      run_failed: 3,
      infrastructure: 4,
      canceled: 5,
      permission_denied: 6,
      interrupted: 130,
    });
    expect(exitCodeFor('oom')).toBe(EXIT_CODES.run_failed);
    expect(exitCodeFor('data_unavailable')).toBe(EXIT_CODES.infrastructure);
    expect(exitCodeFor('gpu_failed')).toBe(EXIT_CODES.infrastructure);
    expect(errorCodeFor(6)).toBe('permission_denied');
    expect(errorCodeFor(1)).toBe('internal_error');
  });

  it('reports a missing or foreign keyring or credential as permission_denied, never as a bug', () => {
    expect(failureOf(new KeyringMissingError('/k.json'))).toMatchObject({ code: 'permission_denied', exitCode: 6 });
    expect(failureOf(new Error('query failed', { cause: new AccessError('no credential at /c.json') }))).toEqual({
      code: 'permission_denied',
      exitCode: 6,
      message: 'no credential at /c.json',
    });
    const foreign = new PayloadDecodeError('unknown_key', 'the payload was encrypted with key "k2"');
    expect(failureOf(new Error('decode', { cause: foreign }))).toMatchObject({
      code: 'permission_denied',
      exitCode: 6,
    });
  });

  it('names settings, an unreachable stack and errors of its own', () => {
    expect(failureOf(new ConfigurationError('EXPCTL_TEMPORAL_PORT must be …'))).toMatchObject({
      code: 'invalid_configuration',
      exitCode: 2,
    });
    expect(failureOf(new StackUnreachableError('cannot reach'))).toMatchObject({ code: 'unavailable', exitCode: 4 });
    expect(failureOf(new CliError('no experiment x', 2))).toEqual({
      code: 'validation_failed',
      exitCode: 2,
      message: 'no experiment x',
    });
    expect(failureOf(new TypeError('x is undefined'))).toEqual({
      code: 'internal_error',
      exitCode: 1,
      message: 'x is undefined',
    });
  });
});
