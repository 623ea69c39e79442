import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { EncryptionCodec } from '../../src/security/codec.js';
import { createKeyring, loadKeyring } from '../../src/security/keyring.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery, refusedMessagesQuery } from '../../src/workflows/definitions.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { temporalCli } from '../helpers/temporal-cli.js';

/** The identity the stray sender gives the server: the audit line must name it. */
const SENDER = 'stray-sender@elsewhere';

let stack: TestStack;
let source: { repo: string; commit: string };
/** A payload of the same message, sealed under another fleet's keyring: base64 of its data, and its metadata. */
let foreign: (value: unknown) => Promise<string[]>;

beforeAll(async () => {
  stack = await startStack({ name: 'refused', host: 'refhost', cpuSlots: 1 });
  source = await makeRepo();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-foreign-keys-'));
  const { file } = await createKeyring(path.join(dir, 'payload-keys.json'));
  const codec = EncryptionCodec.fromKeyring(await loadKeyring({ EXPCTL_KEY_FILE: file }));
  foreign = async (value) => {
    const [sealed] = await codec.encode([defaultPayloadConverter.toPayload(value)]);
    const meta = Object.entries(sealed!.metadata!).flatMap(([key, bytes]) => [
      '--input-meta',
      `${key}=${Buffer.from(bytes).toString('utf8')}`,
    ]);
    return [...meta, '--input-base64', '--input', Buffer.from(sealed!.data!).toString('base64')];
  };
});
afterAll(async () => {
  await stack?.stop();
});

/** The real Temporal CLI, as anyone who reaches the server's port would run it. */
const temporal = (args: string[]) => temporalCli(stack, args, SENDER);

const signal = (workflowId: string, name: string, input: string[]) =>
  temporal(['workflow', 'signal', '--workflow-id', workflowId, '--name', name, ...input]);

const submit = (steps: number) =>
  submitExperiment(stack.client, {
    tag: 'refused',
    hypothesis: 'runs on while stray messages arrive',
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 60,
    env: { VAL_BPB: '1.25', STEPS: String(steps), STEP_SECONDS: '0.2' },
  });

describe('messages whose payloads the codec refuses', () => {
  it('are dropped, counted and audited by the pool, a tag and a running experiment, and runs complete', async () => {
    const first = await submit(2);
    expect(await first.handle.result()).toMatchObject({ status: 'completed' });

    // A run trains while plaintext and foreign-key messages reach every workflow it depends on.
    const running = await submit(60);
    const experiment = stack.client.workflow.getHandle(running.experimentId);
    await waitFor(async () => (await experiment.query(experimentStateQuery)).status === 'running', 90_000);
    const release = { experimentId: running.experimentId };
    const sent = [
      await signal(POOL_WORKFLOW_ID, 'releaseLease', ['--input', JSON.stringify(release)]),
      await signal(POOL_WORKFLOW_ID, 'releaseLease', await foreign(release)),
      await signal(running.experimentId, 'leaseRevoked', ['--input', '{"leaseId":"x","reason":"stray"}']),
      await signal(running.experimentId, 'leaseRevoked', await foreign({ leaseId: 'x', reason: 'stray' })),
    ];
    // The server takes them (it cannot tell); the workers decide.
    for (const result of sent) expect(result.exitCode, result.all).toBe(0);
    const tagUpdate = await temporal([
      'workflow',
      'update',
      'execute',
      '--workflow-id',
      tagWorkflowId('refused'),
      '--name',
      'configureTag',
      '--input',
      '{"patience":1}',
      '--input',
      '{}',
    ]);
    expect(tagUpdate.exitCode).not.toBe(0);
    expect(tagUpdate.all).toMatch(/payload_refused: the update configureTag could not be decoded/);
    await signal(tagWorkflowId('refused'), 'configureTag', await foreign({ patience: 1 }));

    const result = await running.handle.result();
    expect(result).toMatchObject({ status: 'completed', metric: 1.25 });
    // The pool still places runs: the lease the stray releases named was never freed early.
    const after = await submit(2);
    expect(await after.handle.result()).toMatchObject({ status: 'completed' });

    const counted = async (workflowId: string) =>
      (await stack.client.workflow.getHandle(workflowId).query(refusedMessagesQuery)).recent.map(
        (message) => `${message.kind} ${message.name} ${message.reason}`,
      );
    expect(await counted(POOL_WORKFLOW_ID)).toEqual([
      'signal releaseLease payload_not_encrypted',
      expect.stringMatching(/^signal releaseLease (unknown_key|payload_tampered)$/),
    ]);
    expect(await counted(running.experimentId)).toEqual([
      'signal leaseRevoked payload_not_encrypted',
      expect.stringMatching(/^signal leaseRevoked (unknown_key|payload_tampered)$/),
    ]);
    // The signal without a handler waits in the tag's buffer, harmless: only the update is counted.
    expect(await counted(tagWorkflowId('refused'))).toEqual(['update configureTag payload_not_encrypted']);
    expect((await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery)).hosts.refhost?.online).toBe(
      true,
    );

    for (const [workflowId, lines] of [
      [POOL_WORKFLOW_ID, 2],
      [running.experimentId, 2],
      [tagWorkflowId('refused'), 1],
    ] as const) {
      await waitFor(
        async () =>
          (await stack.catalog.auditTrail(workflowId)).filter((entry) => entry.action === 'refused_message').length ===
          lines,
        30_000,
      );
      const audit = (await stack.catalog.auditTrail(workflowId)).filter((entry) => entry.action === 'refused_message');
      for (const entry of audit) {
        // The CLI names an update's sender by its own default identity (process@host), not --identity.
        const sender = entry.detail?.startsWith('update') ? expect.stringMatching(/^\d+@/) : SENDER;
        expect(entry).toMatchObject({ actor: sender, allowed: false });
        expect(entry.detail).toContain(`sent by Temporal identity "${entry.actor}"`);
      }
    }
  });
});
