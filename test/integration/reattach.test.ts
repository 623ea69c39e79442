import fs from 'node:fs/promises';
import path from 'node:path';
import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { waitFor } from '../helpers/wait.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { startWorkerProcess } from '../helpers/worker-process.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { fileExists } from '../helpers/files.js';

let stack: TestStack;
let source: { repo: string; commit: string };
const workers = new Set<ResultPromise>();

async function killWorker(child: ResultPromise, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  child.kill(signal);
  await child;
  workers.delete(child);
}

beforeAll(async () => {
  stack = await startStack({ name: 'reattach', gpuWorker: false });
  source = await makeRepo();
});
afterAll(async () => {
  for (const child of workers) child.kill('SIGKILL');
  await stack?.stop();
});

/** `expctl worker` as its own process (so it can be SIGKILLed and started again on the same work dir). */
async function startWorker(host: string): Promise<{ child: ResultPromise }> {
  const started = await startWorkerProcess(stack, host, { args: ['--orphan-grace', '30'] });
  workers.add(started.child);
  return started;
}

describe('a worker killed mid-run and started again', () => {
  it('re-attaches to the run, which completes with its real metric on its first attempt, leaving no process', async () => {
    const host = 'phoenix';
    let { child } = await startWorker(host);
    const pidFile = path.join(stack.workDir, 'phoenix-train.pid');
    const stopFile = path.join(stack.workDir, 'phoenix-stop');
    const { handle } = await submitExperiment(stack.client, {
      tag: 'reattach',
      hypothesis: 'a worker restart loses nothing',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      maxReplacements: 0,
      // Trains until the restarted worker has re-attached to it (the stop file), 25 s at most.
      env: { VAL_BPB: '1.125', STEPS: '100', STEP_SECONDS: '0.25', PID_FILE: pidFile, STOP_FILE: stopFile },
    });
    const files = runFiles(path.join(stack.workDir, host), handle.workflowId);
    await waitFor(
      async () =>
        (await handle.query(experimentStateQuery)).status === 'running' &&
        (await fileExists(pidFile)) &&
        (await fileExists(files.record)),
      60_000,
    );
    const trainingPid = Number(await fs.readFile(pidFile, 'utf8'));
    const supervisorPid = (JSON.parse(await fs.readFile(files.record, 'utf8')) as { supervisorPid: number })
      .supervisorPid;

    await killWorker(child);
    // The training goes on without its worker.
    expect(processAlive(trainingPid)).toBe(true);
    expect(processAlive(supervisorPid)).toBe(true);
    ({ child } = await startWorker(host));
    // The restarted worker kept the run (it did not kill it) and the pool kept its lease.
    expect(processAlive(trainingPid)).toBe(true);
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.slots.find((s) => s.slot.host === host)?.lease?.experimentId).toBe(handle.workflowId);
    // Re-attached while it still trains (the scenario of this test, not of the next), it may end.
    await waitFor(
      async () => (await fs.readFile(files.log, 'utf8')).includes('expctl: a restarted worker re-attached to this run'),
      60_000,
    );
    expect(processAlive(trainingPid)).toBe(true);
    await fs.writeFile(stopFile, '');

    const result = await handle.result();
    expect(result).toMatchObject({ status: 'completed', metric: 1.125, worker: host });
    const state = await handle.query(experimentStateQuery);
    expect(state.attempts).toBe(1);
    expect(state.timeline.some((t) => /re-placed/.test(t.note ?? ''))).toBe(false);
    expect(state.training?.exitCode).toBe(0);
    expect(await fs.readFile(files.log, 'utf8')).toContain('expctl: a restarted worker re-attached to this run');
    expect(processAlive(trainingPid)).toBe(false);
    expect(processAlive(supervisorPid)).toBe(false);
    expect(JSON.parse(await fs.readFile(files.outcome, 'utf8'))).toMatchObject({
      exitCode: 0,
      metrics: { val_bpb: 1.125 },
    });
    // Shut down (deregistered, offline at once), so no later run is placed on this host.
    await killWorker(child, 'SIGTERM');
  });

  it('a run that finishes while its worker is dead completes with its real metric once the worker is back', async () => {
    const host = 'lazarus';
    let { child } = await startWorker(host);
    const pidFile = path.join(stack.workDir, 'lazarus-train.pid');
    const { handle } = await submitExperiment(stack.client, {
      tag: 'reattach',
      hypothesis: 'a result kept on the host is reported later',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      maxReplacements: 0,
      env: { VAL_BPB: '1.0625', STEPS: '16', STEP_SECONDS: '0.25', PID_FILE: pidFile },
    });
    const files = runFiles(path.join(stack.workDir, host), handle.workflowId);
    await waitFor(
      async () =>
        (await handle.query(experimentStateQuery)).status === 'running' &&
        (await fileExists(pidFile)) &&
        (await fileExists(files.record)),
      60_000,
    );
    const trainingPid = Number(await fs.readFile(pidFile, 'utf8'));
    const supervisorPid = (JSON.parse(await fs.readFile(files.record, 'utf8')) as { supervisorPid: number })
      .supervisorPid;

    await killWorker(child);
    // The run ends with no worker: its supervisor records the exit and leaves nothing behind.
    await waitFor(async () => fileExists(files.exit), 30_000);
    await waitFor(async () => !processAlive(supervisorPid) && !processAlive(trainingPid), 10_000);
    expect(JSON.parse(await fs.readFile(files.exit, 'utf8'))).toMatchObject({ exitCode: 0, signal: null });
    expect(await fileExists(files.outcome)).toBe(false);

    ({ child } = await startWorker(host));
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'completed', metric: 1.0625, worker: host });
    expect((await handle.query(experimentStateQuery)).attempts).toBe(1);
    expect(await fileExists(files.outcome)).toBe(true);
    await killWorker(child, 'SIGTERM');
  });
});
