import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { stallPool } from '../helpers/pool-stall.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { resultWithin } from '../helpers/wait.js';

/** How long the pool may stall here before the orchestrator repairs it (the product's default is a minute). */
const STALL_REPAIR_MS = 3_000;

let stack: TestStack;
let source: { repo: string; commit: string };

beforeAll(async () => {
  stack = await startStack({
    name: 'pool-self-repair',
    host: 'repairhost',
    cpuSlots: 1,
    poolStallRepairMs: STALL_REPAIR_MS,
  });
  source = await makeRepo();
});
afterAll(async () => stack?.stop());

const submit = (hypothesis: string) =>
  submitExperiment(stack.client, {
    tag: 'pool-self-repair',
    hypothesis,
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 120,
    env: { VAL_BPB: '1.25' },
  });

describe('a pool whose workflow task keeps failing', () => {
  it('is repaired by the orchestrator by itself, and a run submitted while it stalled completes', async () => {
    const first = await submit('before the stall');
    expect(await resultWithin(first.handle, 120_000)).toMatchObject({ status: 'completed' });

    const stalledRun = await stallPool(stack.client);

    // Asked while the pool stalls: placed once the orchestrator has repaired it, with nobody's help.
    const second = await submit('while the pool stalls');
    expect(await resultWithin(second.handle, 180_000)).toMatchObject({ status: 'completed', worker: 'repairhost' });
    const log = stack.orchestratorLog.join('\n');
    expect(log).toMatch(/the pool's workflow task kept failing \(.+\); repaired it: reset to event \d+/);
    // Only the message its task failed on was dropped, and the operator is told which and why.
    expect(log).toMatch(/1 dropped\n {2}dropped requestLease \(event \d+, from .+\): /);
    expect((await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).describe()).runId).not.toBe(stalledRun);
  });
});
