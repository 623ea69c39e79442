import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { configurePool, startStack, type TestStack } from '../helpers/stack.js';
import { resultWithin, waitFor } from '../helpers/wait.js';

/** The pool's heartbeat limit here: a terminated holder's slot must be free within it + 5 s. */
const LIMIT_MS = 6_000;

let stack: TestStack;
let source: { repo: string; commit: string };

beforeAll(async () => {
  stack = await startStack({ name: 'terminate', host: 'termhost', cpuSlots: 1 });
  source = await makeRepo();
  await configurePool(stack.client, { heartbeatLimitMs: LIMIT_MS });
});
afterAll(async () => {
  await stack?.stop();
});

const submit = (hypothesis: string, env: Record<string, string>) =>
  submitExperiment(stack.client, {
    tag: 'terminate',
    hypothesis,
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 120,
    env,
  });

describe('an experiment terminated from outside expctl', () => {
  it('frees its slot within the heartbeat limit + 5 s, stops its training and audits the release', async () => {
    const pidFile = path.join(stack.workDir, 'terminated-train.pid');
    const victim = await submit('terminated while training', { MODE: 'slow', PID_FILE: pidFile });
    await waitFor(
      async () =>
        (await victim.handle.query(experimentStateQuery)).status === 'running' &&
        (await fs.access(pidFile).then(
          () => true,
          () => false,
        )),
      60_000,
    );
    const trainingPid = Number(await fs.readFile(pidFile, 'utf8'));

    // As an operator's Terminate (Web UI or CLI) does it: the workflow ends with no word to expctl.
    const terminated = await execa(
      inject('temporalCli'),
      [
        'workflow',
        'terminate',
        '--workflow-id',
        victim.experimentId,
        '--reason',
        'operator stop',
        '--address',
        stack.address,
        '--namespace',
        stack.namespace,
      ],
      { reject: false, all: true },
    );
    expect(terminated.exitCode, terminated.all).toBe(0);
    const terminatedAt = Date.now();

    const next = await submit('placed on the freed slot', { VAL_BPB: '1.25' });
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    await waitFor(
      async () =>
        (await pool.query(poolStateQuery)).slots.some((entry) => entry.lease?.experimentId === next.experimentId),
      60_000,
    );
    const freedAfter = Date.now() - terminatedAt;
    expect(freedAfter).toBeLessThan(LIMIT_MS + 5_000);
    expect(await resultWithin(next.handle, 120_000)).toMatchObject({ status: 'completed', worker: 'termhost' });
    // The worker's lease watch stopped the terminated run's processes.
    await waitFor(async () => !processAlive(trainingPid), 20_000);

    const audit = (await stack.catalog.auditTrail(victim.experimentId)).filter(
      (entry) => entry.action === 'lease_released',
    );
    expect(audit).toEqual([
      expect.objectContaining({
        // The CLI names itself by its process and host (it sends no --identity with a terminate).
        actor: expect.stringMatching(/^\d+@/),
        detail: expect.stringMatching(
          /^lease on termhost\/cpu0 released by the pool: its workflow was terminated by Temporal identity "\d+@[^"]*" \(reason: operator stop\)$/,
        ),
      }),
    ]);
    console.log(`terminated holder's slot served the next run after ${(freedAfter / 1000).toFixed(1)} s`);
  });
});
