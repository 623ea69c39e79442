import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shipCommit, sourceForFleet } from '../../src/client/fleet-remote.js';
import { submitExperiment } from '../../src/client/experiments.js';
import { gitUrlOf, refUpdateRefusal, shippedCommitRef } from '../../src/domain/fleet-remote.js';
import { commitExists, localRepository } from '../../src/gpu-worker/git.js';
import { freePort } from '../../src/shared/ports.js';
import { EXPCTL } from '../helpers/cli.js';
import { commitAll, makeRepo } from '../helpers/repo.js';
import type { Credential } from '../../src/security/credentials.js';
import { gitAccess, type GitAct } from '../../src/security/fleet-remote-auth.js';
import { issueTestCredential, startStack, testTrust, type TestStack } from '../helpers/stack.js';
import { eventually } from '../helpers/wait.js';

let dir: string;
let daemon: ResultPromise;
let remote: string;
let daemonLog = '';

/** Git against the remote as `credential` signs it (expctl's own code does the same). */
const signedGit = (args: string[], act: GitAct, credential: Credential, cwd?: string) => {
  const access = gitAccess(remote, act, credential);
  return execa('git', [...(cwd ? ['-C', cwd] : []), ...args.map((arg) => (arg === remote ? access.url : arg))], {
    env: access.env,
    reject: false,
  });
};

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-fleet-remote-'));
  testTrust(); // the fleet's issuer, which the served remote verifies against
  const port = await freePort();
  daemon = execa(process.execPath, [EXPCTL, 'fleet-remote', 'serve', '--listen', '127.0.0.1', '--port', String(port)], {
    env: { ...process.env, EXPCTL_HOME: path.join(dir, 'control') },
    reject: false,
    all: true,
  });
  daemon.all!.on('data', (chunk: Buffer) => (daemonLog += chunk.toString()));
  remote = `expctl+http://127.0.0.1:${port}/fleet.git`;
  // The banner comes once the server listens.
  await eventually(async () => (daemonLog.includes(`EXPCTL_FLEET_REMOTE=${remote}`) ? true : undefined), 60_000);
}, 90_000);

afterAll(async () => {
  daemon?.kill('SIGTERM');
  await daemon;
  await fs.rm(dir, { recursive: true, force: true });
});

describe('the rule of the served remote', () => {
  const sha = 'a'.repeat(40);
  it('takes only a new refs/expctl/commits/<sha> naming <sha>', () => {
    expect(refUpdateRefusal(shippedCommitRef(sha), '0'.repeat(40), sha)).toBeNull();
    expect(refUpdateRefusal(shippedCommitRef(sha), sha, sha)).toBeNull();
    expect(refUpdateRefusal('refs/heads/main', '0'.repeat(40), sha)).toMatch(/only refs\/expctl\/commits/);
    expect(refUpdateRefusal(shippedCommitRef(sha), '0'.repeat(40), 'b'.repeat(40))).toMatch(/must name commit/);
    expect(refUpdateRefusal(shippedCommitRef(sha), sha, '0'.repeat(40))).toMatch(/never deleted/);
    expect(refUpdateRefusal(shippedCommitRef(sha), 'b'.repeat(40), sha)).toMatch(/never moves/);
    expect(() => shippedCommitRef('HEAD')).toThrow(/not a full commit SHA/);
  });
});

describe('commits reach a worker through the fleet remote', () => {
  it('a submitter ships a commit; a worker with nothing of the submitter fetches exactly it', async () => {
    const source = await makeRepo();
    await shipCommit(source.repo, source.commit, remote);
    const worker = path.join(dir, 'worker-a');
    const cache = await localRepository(remote, worker, source.commit, testTrust().credential);
    expect(cache.startsWith(worker)).toBe(true);
    expect(await commitExists(cache, source.commit)).toBe(true);

    // A later commit is fetched into the same cache by its ref; shipping twice is harmless.
    await fs.writeFile(path.join(source.repo, 'notes.txt'), 'second\n');
    const second = await commitAll(source.repo, 'second');
    const shipped = await sourceForFleet({ repo: source.repo, commit: second }, remote);
    expect(shipped).toEqual({ repo: remote, commit: second });
    await shipCommit(source.repo, second, remote);
    expect(await localRepository(remote, worker, second, testTrust().credential)).toBe(cache);
    expect(await commitExists(cache, second)).toBe(true);

    // Without a remote, the source is left as it is.
    expect(await sourceForFleet({ repo: source.repo, commit: second }, undefined)).toEqual({
      repo: source.repo,
      commit: second,
    });
  }, 120_000);

  it('a commit nobody shipped is refused with what to do; so are pushes outside the rule', async () => {
    await expect(
      localRepository(remote, path.join(dir, 'worker-b'), 'c'.repeat(40), testTrust().credential),
    ).rejects.toThrow(/commit c{40} is not in expctl\+http:\/\/.*push it there, or submit with EXPCTL_FLEET_REMOTE/);
    const source = await makeRepo({ 'other.txt': 'x\n' });
    const admin = testTrust().credential;
    const branch = await signedGit(['push', remote, 'HEAD:refs/heads/main'], 'push_code', admin, source.repo);
    expect(branch.exitCode).not.toBe(0);
    expect(branch.stderr).toMatch(/the fleet remote refuses this push: only refs\/expctl\/commits\/<sha>/);
    const wrongName = await signedGit(
      ['push', remote, `HEAD:${shippedCommitRef('d'.repeat(40))}`],
      'push_code',
      admin,
      source.repo,
    );
    expect(wrongName.exitCode).not.toBe(0);
    expect(wrongName.stderr).toMatch(/must name commit d{40}/);
  }, 120_000);

  it('serves only signed requests of this fleet, each act to the roles that may do it', async () => {
    const source = await makeRepo({ 'private.txt': 'secret research\n' });
    await shipCommit(source.repo, source.commit, remote);
    const plain = gitUrlOf(remote);
    // No credential: not even the list of refs, for a fetch or a push; git shows why.
    const anonymous = await execa('git', ['ls-remote', plain], { reject: false, env: { GIT_TERMINAL_PROMPT: '0' } });
    expect(anonymous.exitCode).not.toBe(0);
    expect(anonymous.stdout).toBe('');
    expect(anonymous.stderr).toMatch(/takes signed requests only/);
    const anonymousPush = await execa(
      'git',
      ['-C', source.repo, 'push', plain, `HEAD:${shippedCommitRef(source.commit)}`],
      {
        reject: false,
        env: { GIT_TERMINAL_PROMPT: '0' },
      },
    );
    expect(anonymousPush.exitCode).not.toBe(0);
    // A worker fetches but may not push; a producer (data only) may not even fetch.
    const worker = issueTestCredential('gpu-host-a', 'worker').credential;
    expect((await signedGit(['ls-remote', remote], 'fetch_code', worker)).stdout).toContain(source.commit);
    const pushed = await signedGit(
      ['push', remote, `HEAD:${shippedCommitRef(source.commit)}`],
      'push_code',
      worker,
      source.repo,
    );
    expect(pushed.exitCode).not.toBe(0);
    expect(pushed.stderr).toMatch(/permission_denied: gpu-host-a \(worker\) may not push code/);
    const producer = issueTestCredential('loader', 'producer').credential;
    const read = await signedGit(['ls-remote', remote], 'fetch_code', producer);
    expect(read.exitCode).not.toBe(0);
    expect(read.stderr).toMatch(/permission_denied: loader \(producer\) may not fetch code/);
    // A request signed for a fetch is not a push.
    const relabeled = gitAccess(remote, 'fetch_code', worker);
    const asPush = await execa(
      'git',
      ['-C', source.repo, 'push', relabeled.url, `HEAD:refs/expctl/commits/${source.commit}`],
      {
        reject: false,
        env: relabeled.env,
      },
    );
    expect(asPush.stderr).toMatch(/signed for fetch_code on fleet-remote, not this one/);
    expect(daemonLog).toMatch(/fleet remote: refused fetch_code from .*: no credential/);
  }, 120_000);
});

describe('a run whose submitter shares no files with its worker', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ name: 'fleet-remote', cpuSlots: 1 });
  }, 120_000);
  afterAll(async () => stack?.stop());

  it('completes from the fleet remote after the submitter deleted its repository', async () => {
    const source = await makeRepo();
    const shipped = await sourceForFleet(source, remote);
    // Nothing of the submitter's is left for the worker to read.
    await fs.rm(source.repo, { recursive: true, force: true });
    const { handle } = await submitExperiment(stack.client, {
      tag: 'fleet-remote',
      hypothesis: 'the commit travels through the fleet remote',
      category: 'other',
      command: ['python3', 'train.py'],
      ...shipped,
      env: { VAL_BPB: '1.25', STEPS: '2', STEP_SECONDS: '0.1' },
    });
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'completed', metric: 1.25 });
    const record = await eventually(async () => {
      const record = await stack.catalog.get(handle.workflowId);
      return record?.patchSha256 ? record : undefined;
    });
    expect(record.repo).toBe(remote);
    expect(record.commit).toBe(source.commit);
  }, 240_000);
});
