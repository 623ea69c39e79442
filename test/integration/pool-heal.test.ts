import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { readPoolSettings } from '../../src/catalog/pool-settings.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { poolStateQuery } from '../../src/workflows/definitions.js';
import { makeRepo } from '../helpers/repo.js';
import { configurePool, drain, startStack, type TestStack } from '../helpers/stack.js';
import { resultWithin, waitFor } from '../helpers/wait.js';

let stack: TestStack;
let source: { repo: string; commit: string };

beforeAll(async () => {
  // No worker yet: the test starts and stops its own, so only the orchestrator can heal the pool.
  stack = await startStack({ name: 'pool-heal', gpuWorker: false });
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
  const terminated = await execa(
    inject('temporalCli'),
    [
      'workflow',
      'terminate',
      '--workflow-id',
      POOL_WORKFLOW_ID,
      '--reason',
      reason,
      '--address',
      stack.address,
      '--namespace',
      stack.namespace,
    ],
    { reject: false, all: true },
  );
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
    await stack.addGpuWorker({ host: 'healhost', cpuSlots: 2 });
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
});
