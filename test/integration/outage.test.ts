import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { waitFor } from '../helpers/wait.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { fileExists } from '../helpers/files.js';
import { OwnServer } from '../helpers/own-server.js';

/** A server of this file's own (the shared one must stay up), stopped and started on the same database and port. */
let server: OwnServer;
let stack: TestStack;

beforeAll(async () => {
  server = await OwnServer.start('outage');
  stack = await startStack({ name: 'outage', address: server.address, cpuSlots: 1 });
});
afterAll(async () => {
  await stack?.stop();
  await server?.remove();
});

describe('a server outage while a run finishes', () => {
  it('loses nothing: the result kept on the host is reported once the server is back', async () => {
    const source = await makeRepo();
    const { handle } = await submitExperiment(stack.client, {
      tag: 'outage',
      hypothesis: 'an outage loses nothing',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      maxReplacements: 0,
      env: { VAL_BPB: '1.375', STEPS: '24', STEP_SECONDS: '0.25' },
    });
    const files = runFiles(path.join(stack.workDir, 'testhost'), handle.workflowId);
    // The training process has started (`running` is set before the task reaches the worker).
    await waitFor(async () => fileExists(files.record), 60_000);

    const stoppedAt = Date.now();
    await server.down();
    // The run finishes while the server is away; its outcome is kept on the host.
    await waitFor(async () => fileExists(files.outcome), 60_000);
    // The worker's heartbeat told its operator that the server went, and why.
    await waitFor(async () => stack.workerLog.some((line) => line.includes('lost the Temporal server')), 30_000);
    const outageMs = 30_000;
    await waitFor(async () => Date.now() - stoppedAt >= outageMs, outageMs + 5000);
    await server.up();

    const result = await handle.result();
    await waitFor(
      async () => stack.workerLog.some((line) => line.includes('reconnected to the Temporal server')),
      30_000,
    );
    const told = stack.workerLog.filter((line) => /Temporal server/.test(line));
    expect(told[0]).toMatch(
      new RegExp(
        // Why, in gRPC's words: refused connections, or the heartbeat's own deadline.
        `^expctl worker testhost: lost the Temporal server at ${server.address}: .*(ECONNREFUSED|connect|unavailable|no answer before the call's deadline)`,
        'i',
      ),
    );
    expect(told.at(-1)).toMatch(/^expctl worker testhost: reconnected to the Temporal server at .* after \d+ s$/);
    // Once when lost, a reminder a minute at most while it stays lost, once when back.
    expect(told.length).toBeLessThanOrEqual(3);
    expect(result).toMatchObject({ status: 'completed', metric: 1.375, worker: 'testhost' });
    expect((await handle.query(experimentStateQuery)).attempts).toBe(1);
    console.log(
      `server down ${((Date.now() - stoppedAt) / 1000).toFixed(0)} s around the run's end: ${result.status}, metric ${result.metric}`,
    );
  }, 240_000);
});
