import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Client, WorkflowFailedError } from '@temporalio/client';
import type { ApplicationFailure } from '@temporalio/common';
import proto from '@temporalio/proto';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { parseExperimentRequest } from '../../src/domain/request.js';
import { ENCRYPTED_ENCODING } from '../../src/security/codec.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { PAYLOAD_REFUSED } from '../../src/shared/refused-payload.js';
import { poolStateQuery } from '../../src/workflows/definitions.js';
import { experimentWorkflow } from '../../src/workflows/experiment.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { EXPCTL } from '../helpers/cli.js';
import { rawHistory } from '../helpers/history.js';
import { openToOthers } from '../helpers/files.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { eventually, waitFor } from '../helpers/wait.js';

const { DescribeWorkflowExecutionResponse } = proto.temporal.api.workflowservice.v1;

let stack: TestStack;
let source: { repo: string; commit: string };
let worker: ResultPromise | undefined;
/** Written into the request; must never reach the server in plaintext. */
const MARKER = `hypothesis-${crypto.randomBytes(8).toString('hex')}`;
let experimentId: string;

/**
 * The encoding of every payload in `value` (a history, a description), with where it is. Left
 * out, as they never pass through codecs: search attributes, headers, and the SDK core's own
 * `patch-data` of a patched() marker (the patch id, written and read by the core alone) and `data`
 * of a local activity's marker (its sequence number, type and times, as an activity's scheduled
 * event shows them; the activity's result is the marker's `result`, which is encrypted).
 */
function payloadEncodings(value: unknown, where = ''): { where: string; encoding: string }[] {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return [];
  const record = value as Record<string, unknown>;
  const metadata = record.metadata as Record<string, Uint8Array> | undefined;
  if (metadata && typeof metadata === 'object' && metadata.encoding instanceof Uint8Array)
    return [{ where, encoding: Buffer.from(metadata.encoding).toString('utf8') }];
  return Object.entries(record).flatMap(([key, child]) =>
    key === 'searchAttributes' ||
    key === 'header' ||
    ((key === 'patch-data' || key === 'data') && where.endsWith('markerRecordedEventAttributes.details'))
      ? []
      : payloadEncodings(child, `${where}.${key}`),
  );
}

beforeAll(async () => {
  // The orchestrator in this process; the only worker is an `expctl worker` process (its umask
  // and file modes are the CLI's), so the files of a run are made the way they are in production.
  stack = await startStack({ name: 'encryption', gpuWorker: false });
  source = await makeRepo();
  worker = execa(
    process.execPath,
    [EXPCTL, 'worker', '--host', 'enchost', '--cpu-slots', '1', '--work-dir', path.join(stack.workDir, 'enchost')],
    {
      // EXPCTL_KEY_FILE (the test run's keyring) is inherited.
      env: {
        TEMPORAL_ADDRESS: stack.address,
        TEMPORAL_NAMESPACE: stack.namespace,
        EXPCTL_HOME: path.join(stack.workDir, 'home'),
      },
      reject: false,
      all: true,
    },
  );
  let output = '';
  worker.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
  await waitFor(
    async () => (await pool.query(poolStateQuery).catch(() => undefined))?.hosts.enchost?.online === true,
    90_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}: expctl worker printed:\n${output.slice(-4000)}`);
  });
});
afterAll(async () => {
  worker?.kill('SIGTERM');
  await worker;
  await stack?.stop();
});

describe('payload encryption on a real Temporal server', () => {
  it('stores requests, results, memos, signals and activity payloads only as ciphertext', async () => {
    const submitted = await submitExperiment(stack.client, {
      tag: 'enc',
      hypothesis: MARKER,
      description: `${MARKER} description`,
      category: 'other',
      command: ['python3', 'train.py'],
      // A URL, so the worker keeps a repository cache too (checked for its file modes below).
      repo: `file://${source.repo}`,
      commit: source.commit,
      timeBudgetSeconds: 30,
      env: { VAL_BPB: '1.25' },
    });
    experimentId = submitted.experimentId;
    const result = await submitted.handle.result();
    expect(result).toMatchObject({ status: 'completed', decision: 'keep', metric: 1.25, worker: 'enchost' });
    expect(
      (await stack.client.workflow.getHandle(experimentId).describe()).memo?.requestDigest,
      'the keyed client reads the memo',
    ).toEqual(expect.any(String));

    for (const workflowId of [experimentId, tagWorkflowId('enc'), POOL_WORKFLOW_ID]) {
      const { bytes, events } = await rawHistory(stack.client, stack.namespace, workflowId);
      expect(bytes.includes(MARKER), `${workflowId}: the hypothesis in plaintext`).toBe(false);
      const encodings = payloadEncodings(events);
      expect(encodings.length).toBeGreaterThan(0);
      expect(encodings.filter((p) => p.encoding !== ENCRYPTED_ENCODING)).toEqual([]);
    }
    const { events } = await rawHistory(stack.client, stack.namespace, experimentId);
    const started = events[0]!.workflowExecutionStartedEventAttributes!;
    expect(payloadEncodings(started.input)).toEqual([{ where: '.payloads.0', encoding: ENCRYPTED_ENCODING }]);
    const memo = payloadEncodings(started.memo);
    expect(memo.length).toBeGreaterThanOrEqual(2);
    expect(memo.every((p) => p.encoding === ENCRYPTED_ENCODING)).toBe(true);
    const completed = events.find((e) => e.workflowExecutionCompletedEventAttributes)!;
    expect(payloadEncodings(completed).map((p) => p.encoding)).toEqual([ENCRYPTED_ENCODING]);
    expect(events.some((e) => e.activityTaskCompletedEventAttributes)).toBe(true);
    // The record's writes run as local activities: their results (the marker's `result`) are ciphertext too.
    const localResults = events.flatMap((e) =>
      e.markerRecordedEventAttributes?.details?.result
        ? payloadEncodings(e.markerRecordedEventAttributes.details.result)
        : [],
    );
    expect(localResults.length).toBeGreaterThan(0);
    expect(localResults.every((p) => p.encoding === ENCRYPTED_ENCODING)).toBe(true);

    const description = await stack.client.workflowService.describeWorkflowExecution({
      namespace: stack.namespace,
      execution: { workflowId: experimentId },
    });
    expect(Buffer.from(DescribeWorkflowExecutionResponse.encode(description).finish()).includes(MARKER)).toBe(false);

    // A client with the SDK's default data converter (no key) cannot read the result.
    const keyless = new Client({ connection: stack.client.connection, namespace: stack.namespace });
    await expect(keyless.workflow.getHandle(experimentId).result()).rejects.toThrow(/binary\/encrypted/);
  });

  it('accepts no work from a client without the key: the experiment ends payload_refused at once', async () => {
    const keyless = new Client({ connection: stack.client.connection, namespace: stack.namespace });
    const workflowId = `exp-keyless-${crypto.randomBytes(4).toString('hex')}`;
    const request = parseExperimentRequest({
      tag: 'enc-keyless',
      hypothesis: 'started without the key',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      timeBudgetSeconds: 30,
      env: { VAL_BPB: '1.0' },
    });
    // The server takes the start (it cannot tell), the orchestrator refuses its input: the
    // workflow fails with the named error, rather than failing its task for ever.
    const handle = await keyless.workflow.start(experimentWorkflow, {
      workflowId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{ experimentId: workflowId, request, submittedAt: new Date().toISOString(), priority: 0 }],
    });
    const failure = await stack.client.workflow
      .getHandle(handle.workflowId)
      .result()
      .then(
        () => undefined,
        (error: WorkflowFailedError) => error.cause as ApplicationFailure,
      );
    expect(failure?.type).toBe(PAYLOAD_REFUSED);
    expect(failure?.message).toMatch(
      new RegExp(`^payload_refused: the start input of ${workflowId} could not be decoded.*payload_not_encrypted`),
    );

    // Started, its refusal audited, failed: no other activity, no timer, signal, child or search attribute.
    const { events } = await rawHistory(stack.client, stack.namespace, workflowId);
    const kinds = events.map((e) => Object.keys(e).find((k) => k.endsWith('Attributes')));
    expect(kinds.filter((kind) => !kind?.startsWith('workflowTask') && !kind?.startsWith('activityTask'))).toEqual([
      'workflowExecutionStartedEventAttributes',
      'workflowExecutionFailedEventAttributes',
    ]);
    expect(
      events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []),
      'only the audit of the refusal ran',
    ).toEqual(['auditRefusedMessages']);
    const audit = await stack.catalog.auditTrail(workflowId);
    expect(audit).toEqual([
      expect.objectContaining({
        action: 'refused_message',
        allowed: false,
        detail: expect.stringMatching(/^start experimentWorkflow dropped: .*payload_not_encrypted.*identity/),
      }),
    ]);
    // Nothing reached the pool or the catalog's experiments either.
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(JSON.stringify(pool)).not.toContain(workflowId);
    expect(await stack.catalog.get(workflowId)).toBeUndefined();
  });

  it('leaves the catalog, the worker directory, the repository cache and the run files private', async () => {
    const workDir = path.join(stack.workDir, 'enchost');
    const runDir = path.join(workDir, 'runs', experimentId);
    // The walk below means something only if the run left its files.
    for (const file of [
      stack.catalogPath,
      path.join(runDir, 'train.log'),
      path.join(runDir, 'commit.patch'),
      path.join(runDir, 'artifacts', 'model.txt'),
    ])
      await fs.access(file);
    expect(await fs.readdir(path.join(workDir, 'repos'))).toHaveLength(1);
    expect(await openToOthers(stack.workDir)).toEqual([]);
  });
});
