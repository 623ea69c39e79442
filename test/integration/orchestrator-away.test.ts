import fs from 'node:fs/promises';
import path from 'node:path';
import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { livenessWorkflowId } from '../../src/workflows/host-liveness.js';
import { startDyingOrchestrator } from '../helpers/dying-orchestrator.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { resultWithin, waitFor } from '../helpers/wait.js';
import { startWorkerProcess } from '../helpers/worker-process.js';

let stack: TestStack;
const children: ResultPromise[] = [];

beforeAll(async () => {
  stack = await startStack({ name: 'orchestrator-away', orchestrator: false, gpuWorker: false });
});
afterAll(async () => {
  for (const child of children) {
    if (child.pid && processAlive(child.pid)) process.kill(child.pid, 'SIGCONT');
    child.kill('SIGKILL');
  }
  await stack?.stop();
});

describe('lease confirmations while the orchestrator is away', () => {
  it('a run trains on through an orchestrator frozen for three fencing times: its host confirms it, not the pool', async () => {
    const orchestrator = await startDyingOrchestrator(stack, {});
    children.push(orchestrator.child);
    const fencingSeconds = 4;
    const worker = await startWorkerProcess(stack, 'away', {
      args: ['--heartbeat', '2', '--fencing-time', String(fencingSeconds)],
    });
    children.push(worker.child);
    const workerLog: string[] = [];
    worker.child.stderr?.on('data', (chunk: Buffer) => workerLog.push(String(chunk)));
    worker.child.stdout?.on('data', (chunk: Buffer) => workerLog.push(String(chunk)));
    const source = await makeRepo();
    const pidFile = path.join(stack.workDir, 'away-train.pid');
    const stopFile = path.join(stack.workDir, 'away-train.stop');
    const { handle } = await submitExperiment(stack.client, {
      tag: 'away',
      hypothesis: 'a run outlives an orchestrator outage longer than its fencing time',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      env: { VAL_BPB: '1.25', STEPS: '400', STEP_SECONDS: '0.5', PID_FILE: pidFile, STOP_FILE: stopFile },
    });
    const trainingPid = async () => Number(await fs.readFile(pidFile, 'utf8').catch(() => '0'));
    await waitFor(async () => (await trainingPid()) > 0, 120_000);
    const pid = await trainingPid();

    // The orchestrator runs the pool: frozen, it answers no lease question (its workflows wait).
    process.kill(orchestrator.child.pid!, 'SIGSTOP');
    const frozenAt = Date.now();
    // The run's supervisor fences it once its last confirmation is older than the fencing time; it
    // is confirmed three fencing times past the freeze, by heartbeats the server accepted meanwhile.
    const attached = runFiles(path.join(stack.workDir, 'away'), handle.workflowId).attached;
    const confirmedAt = async () => (await fs.stat(attached).catch(() => undefined))?.mtimeMs ?? 0;
    await waitFor(async () => (await confirmedAt()) > frozenAt + 3 * fencingSeconds * 1000, 90_000);
    expect(processAlive(pid)).toBe(true);
    process.kill(orchestrator.child.pid!, 'SIGCONT');

    await fs.writeFile(stopFile, '');
    const result = await resultWithin(handle, 180_000);
    expect(result).toMatchObject({ status: 'completed', metric: 1.25 });
    const state = await handle.query(experimentStateQuery);
    expect(state.attempts).toBe(1);
    const exit = JSON.parse(
      await fs.readFile(runFiles(path.join(stack.workDir, 'away'), handle.workflowId).exit, 'utf8'),
    );
    expect(exit.orphaned ?? null).toBeNull();

    // The server's "not found", through the worker's own connection, ends the host's epoch: its
    // liveness workflow terminated by hand, the heartbeat is refused and the activity ends.
    const { incarnation } = (await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery)).hosts.away!;
    await stack.client.workflow.getHandle(livenessWorkflowId('away', incarnation!)).terminate('test');
    await waitFor(async () => workerLog.join('').includes('liveness heartbeat refused: Not found'), 60_000);
  });
});
