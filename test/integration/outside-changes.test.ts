import os from 'node:os';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { temporalCli } from '../helpers/temporal-cli.js';

/** The identity the operator's Temporal CLI gives the server: every audit line must name it. */
const OPERATOR = 'operator-on-call@ops-laptop';

let stack: TestStack;
let source: { repo: string; commit: string };

beforeAll(async () => {
  stack = await startStack({ name: 'outside', host: 'outhost', cpuSlots: 1 });
  source = await makeRepo();
});
afterAll(async () => {
  await stack?.stop();
});

/** The real Temporal CLI, as an operator with the server's address runs it. */
async function temporal(args: string[]) {
  const cli = temporalCli(stack, args, OPERATOR);
  const result = await cli;
  expect(result.exitCode, result.all).toBe(0);
  return { ...result, pid: cli.pid };
}

/** A signal's input sealed with the fleet's own keyring, as an operator holding it would send it. */
async function sealed(value: unknown): Promise<string[]> {
  let payloads = [defaultPayloadConverter.toPayload(value)];
  for (const codec of stack.dataConverter.payloadCodecs ?? []) payloads = await codec.encode(payloads);
  const [payload] = payloads;
  const meta = Object.entries(payload!.metadata!).flatMap(([key, bytes]) => [
    '--input-meta',
    `${key}=${Buffer.from(bytes).toString('utf8')}`,
  ]);
  return [...meta, '--input-base64', '--input', Buffer.from(payload!.data!).toString('base64')];
}

describe('changes made to a run from outside expctl', () => {
  it('an operator signal, a reset and a Temporal-level cancel each leave one audit line with the identity the server recorded', async () => {
    // A run that waits for data nobody adds: it stays alive, and no training is at stake.
    const run = await submitExperiment(stack.client, {
      tag: 'outside',
      hypothesis: 'changed from outside expctl',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      timeBudgetSeconds: 60,
      datasets: ['nobody-adds@latest'],
      waitForDataSeconds: 3600,
      env: {},
    });
    const id = run.experimentId;
    await waitFor(async () => (await run.handle.query(experimentStateQuery)).status === 'waiting_for_data', 60_000);

    // One the codec refuses is dropped and audited as refused_message, not as an operator's signal.
    await temporal(['workflow', 'signal', '--workflow-id', id, '--name', 'leaseRevoked', '--input', '{"leaseId":"x"}']);
    await temporal([
      'workflow',
      'signal',
      '--workflow-id',
      id,
      '--name',
      'leaseRevoked',
      ...(await sealed({ leaseId: 'no-such-lease', reason: 'sent by hand' })),
    ]);
    const firstRun = (await run.handle.describe()).runId;
    // The signal's workflow task has completed: the reset goes back to it.
    await waitFor(async () => {
      const { history } = await stack.client.workflowService.getWorkflowExecutionHistoryReverse({
        namespace: stack.namespace,
        execution: { workflowId: id },
        maximumPageSize: 1,
      });
      return history?.events?.[0]?.workflowTaskCompletedEventAttributes != null;
    }, 30_000);
    await temporal([
      'workflow',
      'reset',
      '--workflow-id',
      id,
      '--type',
      'LastWorkflowTask',
      '--reason',
      'operator reset',
    ]);
    await waitFor(async () => {
      const now = await run.handle.describe();
      return now.runId !== firstRun && now.status.name === 'RUNNING';
    }, 30_000);
    const resetRun = (await run.handle.describe()).runId;
    await waitFor(async () => (await run.handle.query(experimentStateQuery)).status === 'waiting_for_data', 30_000);

    const canceled = await temporal(['workflow', 'cancel', '--workflow-id', id]);
    const ended = await stack.client.workflow.getHandle(id).result();
    expect(ended).toMatchObject({ status: 'canceled' });

    const outside = (await stack.catalog.auditTrail(id)).filter((entry) =>
      ['operator_signal', 'temporal_reset', 'temporal_cancel'].includes(entry.action),
    );
    expect(outside.map((entry) => entry.action).sort()).toEqual([
      'operator_signal',
      'temporal_cancel',
      'temporal_reset',
    ]);
    await waitFor(
      async () =>
        (await stack.catalog.auditTrail(id)).filter((entry) => entry.action === 'refused_message').length === 1,
      30_000,
    );
    const line = (action: string) => outside.find((entry) => entry.action === action)!;
    for (const entry of outside) {
      expect(entry.allowed).toBe(true);
      expect(Number.isNaN(Date.parse(entry.at))).toBe(false);
    }
    // `temporal workflow signal` sends its --identity; the server records it on the event.
    expect(line('operator_signal').actor).toBe(OPERATOR);
    // The CLI (1.5.1) does not pass --identity to the SDK client that cancels: the server records
    // that client's default identity, which names the CLI's process and host.
    expect(line('temporal_cancel').actor).toBe(`${canceled.pid}@${os.hostname()}@`);
    // The server records no caller for a reset (its events name history-service), and the CLI sends none.
    expect(line('temporal_reset').actor).toBeNull();
    expect(line('operator_signal').detail).toMatch(
      /^signal leaseRevoked sent by Temporal identity "operator-on-call@ops-laptop" from outside expctl; its payload decoded, so the workflow's handler received it; expctl ended the run canceled/,
    );
    expect(line('temporal_reset').detail).toContain(`from run ${firstRun}`);
    // The CLI puts its user's name before the reason (1.5.1 always writes <unknown-user>).
    expect(line('temporal_reset').detail).toMatch(
      /^reset by a caller the Temporal server does not record from run .*\(reason: [^)]*operator reset\)/,
    );
    expect(line('temporal_reset').detail).toContain(`as run ${resetRun}`);
    expect(line('temporal_cancel').detail).toContain(
      `a Temporal-level cancel was requested by Temporal identity "${canceled.pid}@`,
    );
    expect(line('temporal_cancel').detail).toContain('expctl ended the run canceled');
  });

  it('a run that only expctl touched has no such line', async () => {
    const run = await submitExperiment(stack.client, {
      tag: 'outside',
      hypothesis: 'left alone',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      timeBudgetSeconds: 60,
      env: { VAL_BPB: '1.25' },
    });
    expect(await run.handle.result()).toMatchObject({ status: 'completed' });
    // Its lease came and went by signals from the pool workflow: those are expctl's own.
    const trail = await stack.catalog.auditTrail(run.experimentId);
    expect(
      trail.filter((entry) => ['operator_signal', 'temporal_reset', 'temporal_cancel'].includes(entry.action)),
    ).toEqual([]);
    expect(trail.length).toBeGreaterThan(0);
  });
});
