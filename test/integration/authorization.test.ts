import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { experimentIdFor, submitExperiment } from '../../src/client/experiments.js';
import { PERMISSION_DENIED, PERMISSION_DENIED_EXIT_CODE } from '../../src/domain/authorization.js';
import { parseExperimentRequest, type ExperimentRequestInput } from '../../src/domain/request.js';
import { credentialPath, ensureLocalAdmin } from '../../src/security/credentials.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { experimentWorkflow } from '../../src/workflows/experiment.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { signAs } from '../../src/client/sign.js';
import { runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { issueTestCredential, startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

// Roles on a real server: every refusal is permission_denied (exit 6), names what it needed, and changes nothing.
let stack: TestStack;
let source: { repo: string; commit: string };
let alice: ReturnType<typeof issueTestCredential>;
let bob: ReturnType<typeof issueTestCredential>;

const cliEnv = (credentialFile: string) => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
  EXPCTL_CREDENTIAL_FILE: credentialFile,
});
const request = (tag: string, env: Record<string, string> = {}): ExperimentRequestInput => ({
  tag,
  hypothesis: 'who may do this',
  category: 'other',
  command: ['python3', 'train.py'],
  repo: source.repo,
  commit: source.commit,
  env: { VAL_BPB: '1.0', ...env },
});
/** A credential from an issuer this fleet does not trust. */
async function foreignCredential() {
  const home = { EXPCTL_HOME: await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-foreign-')) };
  return { credential: ensureLocalAdmin(home).credential, file: credentialPath(home) };
}
const catalog = () => stack.catalog;

beforeAll(async () => {
  stack = await startStack({ name: 'authz', host: 'authhost', cpuSlots: 2 });
  source = await makeRepo();
  alice = issueTestCredential('alice', 'submitter');
  bob = issueTestCredential('bob', 'submitter');
});
afterAll(async () => stack?.stop());

describe('starts', () => {
  it('a start without a signature, or with a foreign credential, is refused before anything is recorded', async () => {
    const leasesBefore = (await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery)).leasesGranted;
    const unsigned = experimentIdFor('authz-unsigned');
    const handle = await stack.client.workflow.start(experimentWorkflow, {
      workflowId: unsigned,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [
        {
          experimentId: unsigned,
          request: parseExperimentRequest(request('authz-unsigned')),
          submittedAt: new Date().toISOString(),
          priority: 0,
        },
      ],
    });
    const error = await handle.result().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).cause).toMatchObject({ type: PERMISSION_DENIED });
    expect((error as Error & { cause: Error }).cause.message).toMatch(/without a valid credential may not submit/);

    const forged = await submitExperiment(stack.client, request('authz-foreign'), {
      credential: (await foreignCredential()).credential,
    });
    const forgedError = await forged.handle.result().catch((e: unknown) => e);
    expect((forgedError as WorkflowFailedError).cause?.message).toMatch(/not issued by this fleet/);

    // Nothing recorded, nothing placed; the refusals are in the audit trail.
    expect(await catalog().get(unsigned)).toBeUndefined();
    expect(await catalog().get(forged.experimentId)).toBeUndefined();
    expect(await catalog().auditTrail(unsigned)).toMatchObject([{ action: 'submit', allowed: false, actor: null }]);
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.leasesGranted).toBe(leasesBefore);
  });

  it('`expctl run` with a credential of another fleet exits 6 with the refusal as JSON', async () => {
    const run = await runCli(
      cliEnv((await foreignCredential()).file),
      ['run', '--tag', 'authz-cli', '--hypothesis', 'h', '--category', 'other', '--json', '--', 'python3', 'train.py'],
      { cwd: source.repo },
    );
    expect(run.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
    expect(JSON.parse(run.stdout as string)).toEqual({
      error: 'permission_denied',
      message: expect.stringMatching(/may not submit: the credential was not issued by this fleet/),
    });
  });

  it('a signature is good for the one request it signed', async () => {
    const startWith = async (experimentId: string, input: ExperimentRequestInput, signedFor: unknown) => {
      const handle = await stack.client.workflow.start(experimentWorkflow, {
        workflowId: experimentId,
        taskQueue: CONTROL_TASK_QUEUE,
        args: [
          {
            experimentId,
            request: parseExperimentRequest(input),
            submittedAt: new Date().toISOString(),
            priority: 0,
            authorization: signedFor as never,
          },
        ],
      });
      return ((await handle.result().catch((e: unknown) => e)) as WorkflowFailedError).cause?.message;
    };
    const signed = experimentIdFor('authz-tamper');
    const honest = { experimentId: signed, request: parseExperimentRequest(request('authz-tamper')), priority: 0 };
    const signature = signAs('submit', signed, honest, alice.credential);
    // The same request under another ID, and another request under the signed ID.
    expect(await startWith(experimentIdFor('authz-tamper'), request('authz-tamper'), signature)).toMatch(
      /signed for submit on exp-authz-tamper-.*, not this one/,
    );
    expect(await startWith(signed, request('authz-tamper', { EVIL: '1' }), signature)).toMatch(
      /the request changed after it was signed/,
    );
  });
});

describe('cancel, drain, tag policy and revocation through the CLI', () => {
  it('a submitter cancels only its own runs; an operator any', async () => {
    const { experimentId, handle } = await submitExperiment(
      stack.client,
      request('authz-cancel', { MODE: 'slow', STEPS: '1' }),
      { credential: alice.credential },
    );
    await waitFor(async () => (await handle.query(experimentStateQuery)).status === 'running', 60_000);

    const refused = await runCli(cliEnv(bob.file), ['cancel', experimentId, '--json']);
    expect(refused.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
    expect(refused.stderr).toMatch(
      /permission_denied: bob \(submitter\) may not cancel: only the identity that submitted it, or the operator or admin role, may/,
    );
    expect(JSON.parse(refused.stdout as string)).toMatchObject({ error: 'permission_denied' });
    expect((await handle.query(experimentStateQuery)).status).toBe('running');

    const own = await runCli(cliEnv(alice.file), ['cancel', experimentId, '--json']);
    expect(own.exitCode).toBe(0);
    expect(JSON.parse(own.stdout as string)).toMatchObject({
      status: 'canceled',
      reason: expect.stringMatching(/canceled by alice \(submitter\)/),
    });

    const shown = await runCli(cliEnv(alice.file), ['show', experimentId, '--json']);
    const audit = JSON.parse(shown.stdout as string).audit as { action: string; actor: string; allowed: boolean }[];
    expect(audit.map((a) => [a.action, a.actor, a.allowed])).toEqual([
      ['submit', 'alice', true],
      ['cancel', 'bob', false],
      ['cancel', 'alice', true],
    ]);
    expect(JSON.parse(shown.stdout as string).record.submitted_by).toBe('alice');
  });

  it('a submitter may not drain, change a tag policy or revoke; nothing changes', async () => {
    const drain = await runCli(cliEnv(alice.file), ['pool', 'drain', 'authhost']);
    expect(drain.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
    expect(drain.stderr).toMatch(/alice \(submitter\) may not drain: needs the operator or admin role/);
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.slots.every((entry) => !entry.draining)).toBe(true);

    const policy = await runCli(cliEnv(alice.file), ['tag', 'create', 'authz-policy', '--min-improvement', '5']);
    expect(policy.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
    expect(policy.stderr).toMatch(/may not configure tag: needs the operator or admin role/);
    const tagState = await stack.client.workflow
      .getHandle(tagWorkflowId('authz-policy'))
      .query('tagState')
      .catch(() => null);
    expect((tagState as { policy?: { minImprovement?: number } } | null)?.policy?.minImprovement ?? 0).toBe(0);

    const revoke = await runCli(cliEnv(alice.file), ['auth', 'revoke', 'bob', '--name']);
    expect(revoke.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
  });

  it('an operator drains; an admin revokes, and the revoked identity is refused from then on', async () => {
    const operator = issueTestCredential('olga', 'operator');
    const drained = await runCli(cliEnv(operator.file), ['pool', 'drain', 'authhost/cpu1', '--reason', 'fan']);
    expect(drained.exitCode).toBe(0);
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.slots.find((entry) => entry.slot.slotId === 'authhost/cpu1')?.drainReason).toBe('fan (by olga)');
    expect((await runCli(cliEnv(operator.file), ['pool', 'undrain', 'authhost/cpu1'])).exitCode).toBe(0);

    const revoked = await runCli(cliEnv(process.env.EXPCTL_CREDENTIAL_FILE!), ['auth', 'revoke', 'bob', '--name']);
    expect(revoked.exitCode).toBe(0);
    const after = await submitExperiment(stack.client, request('authz-revoked'), { credential: bob.credential });
    const error = await after.handle.result().catch((e: unknown) => e);
    expect((error as WorkflowFailedError).cause?.message).toMatch(/credential .* \(bob\) was revoked/);
  });
});

describe('registered workers', () => {
  /** `expctl worker` as a host runs it, with the given credential file; resolves when it exits. */
  const worker = (host: string, credentialFile: string) =>
    runCli(cliEnv(credentialFile), [
      'worker',
      '--host',
      host,
      '--cpu-slots',
      '2',
      '--work-dir',
      path.join(stack.workDir, `${host}-${crypto.randomBytes(2).toString('hex')}`),
    ]);

  it('a worker without a credential of this fleet gets no lease', async () => {
    const rogue = await worker('rogue', (await foreignCredential()).file);
    expect(rogue.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
    expect(rogue.stderr).toMatch(
      /permission_denied: .* may not register host: the credential was not issued by this fleet/,
    );
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.hosts.rogue).toBeUndefined();
    expect(pool.slots.some((entry) => entry.slot.host === 'rogue')).toBe(false);
  });

  it("a second worker claiming a live host's name is refused and revokes nothing", async () => {
    const { handle } = await submitExperiment(stack.client, request('authz-collide', { MODE: 'slow', STEPS: '1' }), {
      credential: alice.credential,
    });
    await waitFor(async () => (await handle.query(experimentStateQuery)).status === 'running', 60_000);
    const impostor = issueTestCredential(`impostor-${crypto.randomBytes(2).toString('hex')}`, 'worker');
    const clone = await worker('authhost', impostor.file);
    expect(clone.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
    expect(clone.stderr).toMatch(/host name authhost is held by the live worker identity/);
    // The run on the real authhost goes on, its lease intact.
    expect((await handle.query(experimentStateQuery)).status).toBe('running');
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.slots.some((entry) => entry.lease?.experimentId === handle.workflowId)).toBe(true);
    expect(pool.hosts.authhost?.online).toBe(true);
    await handle.cancel();
    expect((await handle.result()).status).toBe('canceled');
  });
});
