import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { isTerminal } from '../../src/domain/experiment.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { makeRepo } from '../helpers/repo.js';
import { startDyingOrchestrator } from '../helpers/dying-orchestrator.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { resultWithin, waitFor } from '../helpers/wait.js';

let stack: TestStack;
const children: ResultPromise[] = [];

/** An orchestrator process that SIGKILLs itself right after its activity `dieAfter` (TYPE:WHAT) returns. */
async function startOrchestrator(dieAfter?: string): Promise<{ child: ResultPromise; log: string[] }> {
  const started = await startDyingOrchestrator(stack, dieAfter ? { DIE_AFTER: dieAfter } : {});
  children.push(started.child);
  return started;
}

beforeAll(async () => {
  stack = await startStack({ name: 'record-reexecution', orchestrator: false, gpuWorker: false });
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await stack?.stop();
});

describe('an orchestrator that dies between a catalog write and its workflow task', () => {
  it('the next one re-executes the write: each state change and verification is recorded once', async () => {
    // Catalog writes and verifications run as local activities: one that returned before its task
    // completed is not in the history, so the next orchestrator runs it again, at the workflow's new time.
    const dying = await startOrchestrator('authorize:submit');
    await stack.addGpuWorker({ host: 'reexec', cpuSlots: 1 });
    const source = await makeRepo();
    const { handle } = await submitExperiment(stack.client, {
      tag: 'reexecution',
      hypothesis: 'each state once',
      category: 'hyperparams',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      env: { VAL_BPB: '1.234', STEPS: '6', STEP_SECONDS: '0.5' },
    });
    const id = handle.workflowId;
    expect((await dying.child).signal).toBe('SIGKILL');
    expect(dying.log.join('')).toContain(`dying after authorize:submit of ${id}`);
    // A phase's step re-executed: the queue step (records queued, asks the pool, records running on
    // the grant) and the final step (releases, decides on the tag, records the end).
    for (const write of ['enqueueRun:queued', 'finishRun:completed']) {
      const next = await startOrchestrator(write);
      expect((await next.child).signal).toBe('SIGKILL');
      expect(next.log.join('')).toContain(`dying after ${write} of ${id}`);
    }

    await startOrchestrator();
    const result = await resultWithin(handle, 180_000);
    expect(result.status).toBe('completed');

    const record = (await stack.catalog.get(id))!;
    const timeline = (await handle.query(experimentStateQuery)).timeline;
    // The record's timeline is the workflow's: every state once, terminal last.
    expect(record.events.map((e) => e.status)).toEqual(timeline.map((e) => e.status));
    expect(new Set(record.events.map((e) => e.status)).size).toBe(record.events.length);
    expect(record.events.filter((e) => isTerminal(e.status))).toEqual([
      expect.objectContaining({ status: 'completed' }),
    ]);
    expect(record.status).toBe('completed');
    // The submission was verified twice, by two orchestrators; the audit trail holds it once.
    expect((await stack.catalog.auditTrail(id)).filter((line) => line.action === 'submit')).toEqual([
      expect.objectContaining({ allowed: true }),
    ]);
  });
});
