import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { readPoolSettings } from '../../src/catalog/pool-settings.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { leaseHeldQuery, poolStateQuery, requestLeaseSignal } from '../../src/workflows/definitions.js';
import { outputOf, runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { configurePool, drain, startStack, type TestStack } from '../helpers/stack.js';
import { resultWithin, waitFor } from '../helpers/wait.js';
import { temporalCli } from '../helpers/temporal-cli.js';
import { stallPool } from '../helpers/pool-stall.js';

let stack: TestStack;
/** The worker that serves the healed pool (the last test stops it). */
let healWorker: Awaited<ReturnType<TestStack['addGpuWorker']>>;
let source: { repo: string; commit: string };

beforeAll(async () => {
  // No worker yet: the test starts and stops its own, so only the orchestrator can heal the pool.
  // The operator repairs the stalled pool here: the orchestrator never does it first.
  stack = await startStack({ name: 'pool-heal', gpuWorker: false, poolStallRepairMs: null });
  source = await makeRepo();
});
afterAll(async () => {
  await stack?.stop();
});

const submit = (hypothesis: string) =>
  submitExperiment(stack.client, {
    tag: 'pool-heal',
    hypothesis,
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 120,
    env: { VAL_BPB: '1.25' },
  });

/** As an operator's Terminate does it, with the real Temporal CLI. */
async function terminatePool(reason: string) {
  const terminated = await temporalCli(stack, [
    ...['workflow', 'terminate', '--workflow-id', POOL_WORKFLOW_ID, '--reason', reason],
  ]);
  expect(terminated.exitCode, terminated.all).toBe(0);
}

/** Waits until a run other than `gone` of the pool runs and answers. */
async function nextPoolRun(gone: string) {
  const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
  await waitFor(async () => {
    const running = await pool.describe();
    return running.runId !== gone && running.status.name === 'RUNNING' && (await pool.query(poolStateQuery)) !== null;
  }, 60_000);
  return pool.query(poolStateQuery);
}

describe('a pool that heals', () => {
  it('is started again by the orchestrator with its hosts and the settings kept in the catalog', async () => {
    const first = await stack.addGpuWorker({ host: 'healhost', cpuSlots: 2 });
    await configurePool(stack.client, { heartbeatLimitMs: 9_000, policy: { memoryMarginMb: 256 } });
    await drain(stack.client, 'healhost/cpu1', true, 'fan noise');
    // Kept where only activities write: the catalog.
    expect(await readPoolSettings(stack.catalog)).toEqual({
      heartbeatLimitMs: 9_000,
      policy: expect.objectContaining({ memoryMarginMb: 256 }),
      drains: { 'healhost/cpu1': expect.stringMatching(/^fan noise \(by .+\)$/) },
    });

    // No worker is left to re-create it: the orchestrator must.
    await first.shutdown();
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    const gone = (await pool.describe()).runId;
    await terminatePool('operator mistake');

    const healed = await nextPoolRun(gone);
    expect(stack.orchestratorLog.join('\n')).toMatch(
      /the pool was terminated; started it again with its last state \(1 host\(s\), 0 lease\(s\)\)/,
    );
    // The host came from the ended run's last state; the settings from the catalog (none is carried).
    expect(Object.keys(healed.hosts)).toEqual(['healhost']);
    await waitFor(async () => (await pool.query(poolStateQuery)).heartbeatLimitMs === 9_000, 30_000);
    const restored = await pool.query(poolStateQuery);
    expect(restored.policy.memoryMarginMb).toBe(256);
    expect(restored.slots.find((entry) => entry.slot.slotId === 'healhost/cpu1')).toMatchObject({
      draining: true,
      drainedBy: 'operator',
      drainReason: expect.stringMatching(/^fan noise \(by .+\)$/),
    });

    // The worker comes back to the healed pool; the drained slot gets no run, the other serves it.
    healWorker = await stack.addGpuWorker({ host: 'healhost', cpuSlots: 2 });
    const next = await submit('placed by the healed pool');
    expect(await resultWithin(next.handle, 120_000)).toMatchObject({
      status: 'completed',
      worker: 'healhost',
      gpu: 'healhost/cpu0',
    });

    // An undrain is forgotten by the catalog too.
    await drain(stack.client, 'healhost/cpu1', false, 'fixed');
    expect((await readPoolSettings(stack.catalog)).drains).toEqual({});
  });

  it('`expctl pool repair` un-stalls a pool, drops only the messages it cannot read or apply, and the next run completes', async () => {
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    // A keyring holder's malformed signal: every retry of the pool's workflow task fails on it.
    const stalledRun = await stallPool(stack.client);
    // Sent while it is stalled: a legitimate request (for a class no host has, so it stays queued) ...
    const waiting = {
      experimentId: 'waits-for-an-h200',
      requirements: { acceleratorClass: 'h200', gpuMemoryMb: 1_000, runtimeTags: [] },
      priority: 0,
    };
    await pool.signal(requestLeaseSignal, waiting);
    // ... and a plaintext one the codec refuses, from the real Temporal CLI.
    const plaintext = await temporalCli(stack, [
      ...['workflow', 'signal', '--workflow-id', POOL_WORKFLOW_ID, '--name', 'releaseLease'],
      ...['--input', '{"experimentId":"waits-for-an-h200"}'],
    ]);
    expect(plaintext.exitCode, plaintext.all).toBe(0);

    const env = { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace };
    const repaired = await runCli(env, ['pool', 'repair', '--json']);
    expect(repaired.exitCode, `${repaired.stdout}\n${repaired.stderr}`).toBe(0);
    const report = outputOf('pool-repair', repaired) as {
      stalled: boolean;
      failure: string;
      run_id: string;
      repaired_run_id: string;
      resent: number;
      dropped: { signal: string; sent_by: string | null; reason: string }[];
    };
    expect(report).toMatchObject({ stalled: true, run_id: stalledRun });
    expect(report.failure).toMatch(/null/);
    expect(report.repaired_run_id).not.toBe(stalledRun);
    // Only the two: the one that fails the pool, and the one the codec cannot read.
    expect(report.dropped).toHaveLength(2);
    expect(report.dropped).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          signal: 'requestLease',
          reason: expect.stringMatching(/^the pool's task failed on it: .*null/),
        }),
        expect.objectContaining({
          signal: 'releaseLease',
          // The Temporal CLI names itself so in the history.
          sent_by: expect.stringMatching(/^temporal-cli:/),
          reason: expect.stringMatching(/^the codec cannot read it/),
        }),
      ]),
    );
    // The legitimate request and the workers' heartbeats were given back.
    expect(report.resent).toBeGreaterThanOrEqual(1);
    // Given back to the repaired run as it was sent (the pool then drops it: no such experiment holds it).
    const repairedEvents =
      (await stack.client.workflow.getHandle(POOL_WORKFLOW_ID, report.repaired_run_id).fetchHistory()).events ?? [];
    const codec = stack.dataConverter.payloadCodecs![0]!;
    const requests = await Promise.all(
      repairedEvents
        .filter((event) => event.workflowExecutionSignaledEventAttributes?.signalName === 'requestLease')
        .map(async (event) => {
          const [payload] = await codec.decode(event.workflowExecutionSignaledEventAttributes!.input!.payloads!);
          return defaultPayloadConverter.fromPayload<{ experimentId: string } | null>(payload!);
        }),
    );
    expect(requests.map((request) => request?.experimentId)).toContain('waits-for-an-h200');
    const state = await pool.query(poolStateQuery);
    expect(state.hosts.healhost?.online).toBe(true);

    // Not stalled any more: a second repair finds nothing to do, and the next run completes.
    const again = await runCli(env, ['pool', 'repair', '--json']);
    expect(again.exitCode, String(again.stderr)).toBe(0);
    expect(outputOf('pool-repair', again)).toMatchObject({
      stalled: false,
      run_id: report.repaired_run_id,
      resent: 0,
      dropped: [],
    });
    const next = await submit('placed by the repaired pool');
    expect(await resultWithin(next.handle, 120_000)).toMatchObject({ status: 'completed', worker: 'healhost' });
  });
  it('ended while stalled, is started again empty, and says of a slot it does not know neither yes nor no', async () => {
    // No worker registers meanwhile: the pool knows no slot until one does.
    await healWorker.shutdown();
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    const stalledRun = await stallPool(stack.client);
    await terminatePool('stalled: an operator ends it');

    // Its last state cannot be read (replaying its history fails on the same message): it starts empty.
    const healed = await nextPoolRun(stalledRun);
    expect(stack.orchestratorLog.join('\n')).toMatch(/the pool was terminated; started it again empty/);
    expect(healed.slots).toEqual([]);
    // A run still training on healhost asks about its lease: no answer stops it before its host is back.
    expect(
      await pool.query(leaseHeldQuery, { slotId: 'healhost/cpu0', leaseId: 'a-lease-this-run-never-saw' }),
    ).toBeNull();

    await stack.addGpuWorker({ host: 'healhost', cpuSlots: 2 });
    const next = await submit('placed by the pool started again empty');
    expect(await resultWithin(next.handle, 120_000)).toMatchObject({ status: 'completed', worker: 'healhost' });
  });
});
