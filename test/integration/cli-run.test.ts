import fs from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { experimentIdFor, IdempotencyConflictError, submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { EXPCTL, RESULT_KEYS, runCli } from '../helpers/cli.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { configurePool, startStack, type TestStack } from '../helpers/stack.js';
import { settledWithin, waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

// `expctl run` as an agent runs it: a process, its JSON on stdout and its exit code, for every terminal state.
const HOST = 'clihost';
let stack: TestStack;
let source: { repo: string; commit: string };

const cliEnv = () => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
});
const runArgs = (tag: string, extra: string[], command = ['python3', 'train.py']) => [
  'run',
  '--tag',
  tag,
  '--hypothesis',
  'an agent tries something',
  '--category',
  'hyperparams',
  ...(extra.includes('--time-budget') ? [] : ['--time-budget', '30']),
  ...extra,
  '--json',
  '--',
  ...command,
];

/** Runs `expctl run` to the end; returns its exit code and the one JSON object it printed. */
async function expctlRun(
  tag: string,
  extra: string[],
  command?: string[],
): Promise<{ exitCode: number; result: ExperimentResult; stderr: string }> {
  const child = await runCli(cliEnv(), runArgs(tag, extra, command), { cwd: source.repo });
  let result: ExperimentResult;
  try {
    result = JSON.parse(child.stdout as string) as ExperimentResult;
  } catch {
    throw new Error(`expctl run printed no JSON (exit ${child.exitCode}):\n${child.stdout}\n${child.stderr}`);
  }
  expect(Object.keys(result)).toEqual(expect.arrayContaining([...RESULT_KEYS]));
  return { exitCode: child.exitCode!, result, stderr: child.stderr as string };
}

/** What every result that carries no decision must say; a crash may carry discard + git_reset (program.md). */
function expectNoKeep(result: ExperimentResult): void {
  expect(result.metric).toBeNull();
  expect([null, 'discard']).toContain(result.decision);
  expect(result.action).toBe(result.decision === 'discard' ? 'git_reset' : null);
}

beforeAll(async () => {
  stack = await startStack({ name: 'clirun', host: HOST, cpuSlots: 4 });
  source = await makeRepo();
});
afterAll(async () => stack?.stop());

describe('expctl run: decisions (exit 0)', () => {
  it('keeps the first run and discards a worse one', async () => {
    const first = await expctlRun('cli-decide', ['--env', 'VAL_BPB=1.500000']);
    expect(first.exitCode).toBe(0);
    expect(first.result).toMatchObject({
      tag: 'cli-decide',
      status: 'completed',
      decision: 'keep',
      action: 'keep_commit',
      metric_name: 'val_bpb',
      metric: 1.5,
      consecutive_crashes: 0,
      should_abort: false,
      worker: HOST,
    });
    expect(first.result.experiment_id).toMatch(/^exp-cli-decide-/);

    const worse = await expctlRun('cli-decide', ['--env', 'VAL_BPB=1.600000']);
    expect(worse.exitCode).toBe(0);
    expect(worse.result).toMatchObject({
      status: 'completed',
      decision: 'discard',
      action: 'git_reset',
      metric: 1.6,
      best: 1.5,
    });
    expect(worse.result.experiment_id).not.toBe(first.result.experiment_id);
  }, 300_000);
});

describe('expctl run: the run failed (exit 3)', () => {
  it("command_failed, oom and timed_out each end with exit 3 and count as the tag's crash", async () => {
    const [failed, oom, timedOut] = await Promise.all([
      expctlRun('cli-fail', ['--env', 'MODE=fail']),
      expctlRun('cli-oom', ['--env', 'MODE=oom']),
      expctlRun('cli-hang', ['--env', 'MODE=hang', '--time-budget', '1', '--timeout', '2']),
    ]);
    for (const [run, status] of [
      [failed, 'command_failed'],
      [oom, 'oom'],
      [timedOut, 'timed_out'],
    ] as const) {
      expect(run.exitCode, `${status}: ${run.result.reason}`).toBe(3);
      expect(run.result.status).toBe(status);
      expect(run.result.consecutive_crashes).toBe(1);
      expect(run.result.reason.length).toBeGreaterThan(0);
      expectNoKeep(run.result);
    }
  }, 300_000);
});

describe('expctl run: refused (exit 2, validation_failed)', () => {
  // Every malformed flag, each with its own message and nothing submitted: the corpus of test/integration/bad-input.test.ts.

  it('a request the worker cannot serve is refused after submission, with its experiment ID', async () => {
    const { exitCode, result } = await expctlRun('cli-refused', ['--dataset', 'not-on-this-host']);
    expect(exitCode).toBe(2);
    expect(result).toMatchObject({ status: 'validation_failed', consecutive_crashes: 0, should_abort: false });
    expect(result.experiment_id).toMatch(/^exp-cli-refused-/);
    expect(result.reason).toContain('not-on-this-host');
  }, 300_000);
});

describe('idempotency keys', () => {
  it('the same request returns the same experiment; a different one is refused, naming it and the fields', async () => {
    const first = await expctlRun('cli-idem', ['--idempotency-key', 'try-1', '--env', 'VAL_BPB=1.4']);
    expect(first.result).toMatchObject({ status: 'completed', decision: 'keep' });
    const again = await expctlRun('cli-idem', ['--idempotency-key', 'try-1', '--env', 'VAL_BPB=1.4']);
    expect(again.exitCode).toBe(0);
    expect(again.result).toEqual(first.result);

    const changed = await expctlRun('cli-idem', [
      '--idempotency-key',
      'try-1',
      '--env',
      'VAL_BPB=1.3',
      '--priority',
      '3',
    ]);
    expect(changed.exitCode).toBe(2);
    expect(changed.result).toMatchObject({ experiment_id: null, status: 'validation_failed' });
    expect(changed.result.reason).toContain(first.result.experiment_id!);
    expect(changed.result.reason).toMatch(/fields that differ: env\.VAL_BPB, priority/);
    expect(changed.result.reason).not.toContain('1.3');
  }, 300_000);

  it('40 concurrent submissions with 10 duplicated keys give 30 experiments; a racing different request is refused', async () => {
    const request = (key: string, value = '1.0'): ExperimentRequestInput => ({
      tag: 'cli-burst',
      hypothesis: 'h',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      // A dataset no host has: each experiment is refused by validation, so the burst trains nothing.
      idempotencyKey: key,
      env: { VAL_BPB: value },
      datasets: ['absent-dataset'],
    });
    const keys = [...Array.from({ length: 30 }, (_, i) => `k${i}`), ...Array.from({ length: 10 }, (_, i) => `k${i}`)];
    const submitted = await Promise.all(keys.map((key) => submitExperiment(stack.client, request(key))));
    const ids = new Set(submitted.map((s) => s.experimentId));
    expect(ids.size).toBe(30);
    for (const [i, key] of keys.entries()) expect(submitted[i]!.experimentId).toBe(experimentIdFor('cli-burst', key));

    const race = await Promise.allSettled([
      submitExperiment(stack.client, request('race', '1.1')),
      submitExperiment(stack.client, request('race', '1.2')),
    ]);
    expect(race.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const refused = race.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(refused.reason).toBeInstanceOf(IdempotencyConflictError);
    expect((refused.reason as IdempotencyConflictError).fields).toEqual(['env.VAL_BPB']);

    const results = await Promise.all([...ids].map((id) => stack.client.workflow.getHandle(id).result()));
    expect(new Set(results.map((r) => r.status))).toEqual(new Set(['validation_failed']));
    // A finished experiment: the same request still returns it, a different one is still refused.
    expect((await submitExperiment(stack.client, request('k0'))).experimentId).toBe(experimentIdFor('cli-burst', 'k0'));
    await expect(submitExperiment(stack.client, request('k0', '2.0'))).rejects.toThrow(
      /already used for experiment exp-cli-burst-k.*env\.VAL_BPB/,
    );
  }, 300_000);
});

describe('expctl run: infrastructure (exit 4) and cancel (exit 5)', () => {
  it('retry_exhausted when the worker cannot prepare the run on any attempt', async () => {
    // The experiment ID is known from the key: the worker's artifacts directory is made a regular
    // file, so creating it fails on every attempt — an infrastructure failure, not the code's.
    const id = experimentIdFor('cli-infra', 'broken-disk');
    const runDir = path.join(stack.workDir, HOST, 'runs', id);
    await fs.mkdir(runDir, { recursive: true });
    await fs.writeFile(path.join(runDir, 'artifacts'), 'not a directory\n');
    const { exitCode, result } = await expctlRun('cli-infra', [
      '--idempotency-key',
      'broken-disk',
      '--env',
      'VAL_BPB=1.0',
    ]);
    expect(exitCode).toBe(4);
    expect(result).toMatchObject({
      experiment_id: id,
      status: 'retry_exhausted',
      consecutive_crashes: 0,
      should_abort: false,
    });
    expectNoKeep(result);
    const state = await stack.client.workflow.getHandle(id).query(experimentStateQuery);
    expect(state.attempts).toBeGreaterThan(1);
  }, 300_000);

  it('canceled while training', async () => {
    const id = experimentIdFor('cli-cancel', 'stop-me');
    const child = execa(
      process.execPath,
      [EXPCTL, ...runArgs('cli-cancel', ['--idempotency-key', 'stop-me', '--env', 'MODE=slow'])],
      { cwd: source.repo, env: cliEnv(), reject: false },
    );
    const handle = stack.client.workflow.getHandle(id);
    await waitFor(async () => (await handle.query(experimentStateQuery)).status === 'running', 90_000);
    await handle.cancel();
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const done = await settledWithin(child, handle, 200_000, async () => {
      child.kill('SIGKILL');
      return `expctl run's stderr:\n${stderr.slice(-4000)}`;
    });
    expect(done.exitCode).toBe(5);
    const result = JSON.parse(done.stdout as string) as ExperimentResult;
    expect(result).toMatchObject({
      experiment_id: id,
      status: 'canceled',
      consecutive_crashes: 0,
      should_abort: false,
    });
    expectNoKeep(result);
  }, 300_000);

  it('worker_lost when the only worker that can serve the run is killed', async () => {
    const host = 'clidoomed';
    // This worker process reports to the pool every 2 s (the stack's own workers every second): an
    // 8 s limit notices a dead one soon without ever taking a live one offline between two reports.
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    await configurePool(stack.client, { heartbeatLimitMs: 8_000 });
    let worker: ResultPromise | undefined = execa(
      process.execPath,
      [
        EXPCTL,
        'worker',
        '--host',
        host,
        '--cpu-slots',
        '1',
        '--runtime-tag',
        'doomed',
        // Its supervisor waits this long for a worker to come back before it kills the run.
        '--orphan-grace',
        '4',
        '--heartbeat',
        '2',
        '--work-dir',
        path.join(stack.workDir, host),
      ],
      { env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace }, reject: false, all: true },
    );
    try {
      await waitFor(async () => (await pool.query(poolStateQuery)).hosts[host]?.online === true, 120_000).catch(
        async (error) => {
          worker?.kill('SIGKILL');
          throw new Error(`worker ${host} never came online: ${(error as Error).message}\n${(await worker)?.all}`);
        },
      );
      const pidFile = path.join(stack.workDir, 'doomed-train.pid');
      const id = experimentIdFor('cli-lost', 'doomed-1');
      const child = execa(
        process.execPath,
        [
          EXPCTL,
          ...runArgs('cli-lost', [
            '--idempotency-key',
            'doomed-1',
            '--runtime-tag',
            'doomed',
            '--max-replacements',
            '0',
            '--env',
            'MODE=slow',
            '--env',
            `PID_FILE=${pidFile}`,
          ]),
        ],
        {
          cwd: source.repo,
          env: cliEnv(),
          reject: false,
        },
      );
      const handle = stack.client.workflow.getHandle(id);
      await waitFor(
        async () => (await handle.query(experimentStateQuery)).status === 'running' && (await fileExists(pidFile)),
        120_000,
      );
      const trainingPid = Number(await fs.readFile(pidFile, 'utf8'));
      worker.kill('SIGKILL');
      await worker;
      worker = undefined;
      const done = await child;
      expect(done.exitCode).toBe(4);
      const result = JSON.parse(done.stdout as string) as ExperimentResult;
      expect(result).toMatchObject({
        experiment_id: id,
        status: 'worker_lost',
        worker: host,
        consecutive_crashes: 0,
        should_abort: false,
      });
      expectNoKeep(result);
      await waitFor(async () => !processAlive(trainingPid), 40_000);
    } finally {
      worker?.kill('SIGKILL');
    }
  }, 300_000);
});
