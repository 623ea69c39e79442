import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { resultWithin, waitFor } from '../helpers/wait.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { configurePool, startStack, type TestStack } from '../helpers/stack.js';
import { startWorkerProcess } from '../helpers/worker-process.js';
import { fileExists } from '../helpers/files.js';

const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));

let stack: TestStack;
let source: { repo: string; commit: string };
let worker: ResultPromise | undefined;

/**
 * `expctl worker` as its own process (so it can be SIGKILLed), online in the pool; sets a short
 * pool heartbeat limit (default 60 s) so the pool notices silence in time, with a worker that
 * reports every 2 s (the pool never waits less than two of its reports).
 */
async function startWorker(host: string, extraArgs: string[] = []): Promise<{ child: ResultPromise }> {
  const started = await startWorkerProcess(stack, host, { args: ['--heartbeat', '2', ...extraArgs] });
  await configurePool(stack.client, { heartbeatLimitMs: 8_000 });
  return started;
}

beforeAll(async () => {
  // The in-process stack has no GPU worker: the only slot is the separate worker process below.
  stack = await startStack({ name: 'workerloss', gpuWorker: false });
  source = await makeRepo();
});
afterAll(async () => {
  worker?.kill('SIGKILL');
  await stack?.stop();
});

describe('a worker process killed during training', () => {
  it('takes its GPUs offline, ends the experiment worker_lost within the limit, and leaves no training process', async () => {
    // A short orphan grace: the supervisor waits this long for a restarted worker before it kills the run.
    worker = (await startWorker('victim', ['--orphan-grace', '4'])).child;
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);

    const pidFile = path.join(stack.workDir, 'victim-train.pid');
    const { handle } = await submitExperiment(stack.client, {
      tag: 'loss',
      hypothesis: 'the worker dies',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      timeBudgetSeconds: 120,
      maxReplacements: 0,
      env: { MODE: 'slow', PID_FILE: pidFile },
    });
    await waitFor(
      async () => (await handle.query(experimentStateQuery)).status === 'running' && (await fileExists(pidFile)),
      60_000,
    );
    const trainingPid = Number(await fs.readFile(pidFile, 'utf8'));
    expect(processAlive(trainingPid)).toBe(true);

    const killedAt = Date.now();
    worker.kill('SIGKILL');
    await worker;

    // The supervisor keeps the run for its orphan grace (4 s) in case a worker comes back to adopt
    // it; none does, so it takes every process of the run down.
    await waitFor(async () => !processAlive(trainingPid), 30_000);
    const exitFile = path.join(stack.workDir, 'victim', 'runs', handle.workflowId, 'exit.json');
    expect(JSON.parse(await fs.readFile(exitFile, 'utf8'))).toMatchObject({
      orphaned: expect.stringMatching(/^orphaned: no worker for \d+s$/),
    });

    // Whichever notices first ends it: the pool (host silent past its limit revokes the lease)
    // or the train activity's own heartbeat timeout (10 s) with the host's queue unanswered (15 s).
    const result = await handle.result();
    const elapsed = (Date.now() - killedAt) / 1000;
    expect(result.status).toBe('worker_lost');
    expect(result.reason).toMatch(
      /no heartbeat from victim for \d+s \(last at [\dT:.-]+Z\); the worker is lost|the worker on victim stopped answering \(HEARTBEAT/,
    );
    expect(elapsed).toBeLessThan(8 + 1 + 10); // pool limit, its heartbeat period, a few seconds
    const state = await pool.query(poolStateQuery);
    expect(state.hosts.victim?.online).toBe(false);
    expect(state.slots.find((s) => s.slot.host === 'victim')?.lease).toBeNull();
    // The record holds everything up to the kill, and the terminal state.
    const record = (await stack.catalog.get(handle.workflowId))!;
    expect(record).toMatchObject({
      status: 'worker_lost',
      reason: result.reason,
      gpu: 'victim/cpu0',
      worker: 'victim',
      commit: source.commit,
    });
    expect((await stack.catalog.blobPage(record.patchSha256!, 0, 1 << 20))?.text).toContain('+++ b/train.py');
    expect(record.environment?.host).toBe('victim');
    expect(record.placement?.slotId).toBe('victim/cpu0');
    expect(record.events.map((e) => e.status)).toEqual(['submitted', 'validating', 'queued', 'running', 'worker_lost']);
    console.log(`worker SIGKILLed: ${result.status} after ${elapsed.toFixed(1)} s (${result.reason})`);
  });

  it('re-places the run on another worker when the request allows it', async () => {
    // A short fencing time: the run is re-placed once the victim has surely stopped it (4 + 5 + 5 s).
    const victim = (
      await startWorker('victim2', ['--runtime-tag', 'spare-ok', '--orphan-grace', '4', '--fencing-time', '4'])
    ).child;
    const { handle } = await submitExperiment(stack.client, {
      tag: 'replace',
      hypothesis: 'survives a lost worker',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['spare-ok'] },
      maxReplacements: 1,
      env: { VAL_BPB: '1.25', STEPS: '40', STEP_SECONDS: '0.1' },
    });
    await waitFor(async () => (await handle.query(experimentStateQuery)).status === 'running', 60_000);
    // A spare joins, then the first worker dies mid-run.
    await stack.addGpuWorker({ host: 'spare', cpuSlots: 1, runtimeTags: ['spare-ok'] });
    victim.kill('SIGKILL');
    await victim;
    const result = await resultWithin(handle, 200_000);
    expect(result).toMatchObject({ status: 'completed', metric: 1.25, worker: 'spare', gpu: 'spare/cpu0' });
    const state = await handle.query(experimentStateQuery);
    expect(state.attempts).toBe(2);
    expect(
      state.timeline.find(
        (t) => t.status === 'queued' && /^re-placed \(attempt 2\) on a healthy cpu slot after: /.test(t.note ?? ''),
      ),
    ).toBeDefined();
  });

  it('ends a re-placed run worker_lost, with the reason, when no live host can take it within the heartbeat limit', async () => {
    // The only host with this runtime tag: once it dies, nothing live can take the run again.
    const only = (
      await startWorker('lonely', ['--runtime-tag', 'only-lonely', '--orphan-grace', '4', '--fencing-time', '4'])
    ).child;
    const { handle } = await submitExperiment(stack.client, {
      tag: 'unplaceable',
      hypothesis: 'its only capable host dies',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['only-lonely'] },
      maxReplacements: 1,
      env: { MODE: 'slow' },
    });
    await waitFor(async () => (await handle.query(experimentStateQuery)).status === 'running', 60_000);
    const killedAt = Date.now();
    only.kill('SIGKILL');
    await only;
    const result = await resultWithin(handle, 120_000);
    const elapsed = (Date.now() - killedAt) / 1000;
    expect(result.status).toBe('worker_lost');
    expect(result.reason).toMatch(
      /; re-placed, but no live host could take it within 8 s \(the pool's heartbeat limit\)$/,
    );
    // Lost (the pool's limit, or the train activity's heartbeat timeout and the host's silence), the
    // host's fencing time, kill grace and margin (4 + 5 + 5), then the wait.
    expect(elapsed).toBeLessThan(8 + 1 + 10 + 14 + 8 + 10);
    const state = await handle.query(experimentStateQuery);
    expect(state.timeline.map((t) => t.status)).toEqual([
      'submitted',
      'validating',
      'queued',
      'running',
      'queued',
      'worker_lost',
    ]);
    // Nothing of it is left in the pool's queue.
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.queue.map((request) => request.experimentId)).not.toContain(handle.workflowId);
    console.log(`re-placed run with no live host: ${result.status} after ${elapsed.toFixed(1)} s (${result.reason})`);
  });

  it("refuses a second worker started on a live worker's host and directory before it touches anything", async () => {
    const first = (await startWorker('twin', ['--runtime-tag', 'twin-ok'])).child;
    const stopFile = path.join(stack.workDir, 'twin-stop');
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    const { handle } = await submitExperiment(stack.client, {
      tag: 'twin',
      hypothesis: 'a second worker of the same name changes nothing',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['twin-ok'] },
      // Trains until the test has checked the refusal (the stop file), 20 s at most.
      env: { VAL_BPB: '1.25', STEPS: '100', STEP_SECONDS: '0.2', STOP_FILE: stopFile },
    });
    await waitFor(async () => (await handle.query(experimentStateQuery)).status === 'running', 60_000);
    const before = (await pool.query(poolStateQuery)).hosts.twin!;

    const second = await execa(
      process.execPath,
      [EXPCTL, 'worker', '--host', 'twin', '--cpu-slots', '1', '--work-dir', path.join(stack.workDir, 'twin')],
      { env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace }, reject: false, all: true },
    );
    expect(second.exitCode, second.all).toBe(6);
    expect(second.all).toContain(
      `refused: the worker directory ${path.join(stack.workDir, 'twin')} is held by a running expctl worker for host twin (pid ${first.pid}`,
    );
    expect(second.all).toContain('this worker touched nothing');
    // Refused while the run still trained: nothing of the first worker's changed.
    expect((await handle.query(experimentStateQuery)).status).toBe('running');
    const during = (await pool.query(poolStateQuery)).hosts.twin!;
    expect(during).toMatchObject({ online: true, incarnation: before.incarnation, registeredAt: before.registeredAt });
    await fs.writeFile(stopFile, '');

    const result = await resultWithin(handle, 120_000);
    expect(result).toMatchObject({ status: 'completed', metric: 1.25, worker: 'twin', gpu: 'twin/cpu0' });
    const state = await handle.query(experimentStateQuery);
    expect(state.attempts).toBe(1);
    expect(state.timeline.map((t) => t.status)).toEqual([
      'submitted',
      'validating',
      'queued',
      'running',
      'evaluating',
      'completed',
    ]);
    first.kill('SIGTERM');
    await first;
  });
});
