import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { commitAll, makeRepo, processAlive } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The worker's budget semantics on autoresearch's own output: setup is a phase of its own (cached
 * per lockfile), the kill limit (default 2 x the training budget) counts from the training process's
 * start, and the record shows where the time went.
 */
let stack: TestStack;
let source: { repo: string; commit: string };
let syncCount: string;
const LOCK = '# fake uv.lock\nversion = 1\n[[package]]\nname = "torch"\nversion = "2.9.1"\n';
const PYPROJECT = '[project]\nname = "autoresearch"\nversion = "0.1.0"\ndependencies = ["torch==2.9.1"]\n';
const AUTORESEARCH = path.join(FIXTURES, 'scripts', 'autoresearch_train.py');

function request(overrides: Partial<ExperimentRequestInput> & { tag: string }): ExperimentRequestInput {
  return {
    hypothesis: 'baseline',
    category: 'hyperparams',
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 4,
    ...overrides,
    env: {
      FAKE_UV_SYNC_SECONDS: '2',
      FAKE_UV_SYNC_COUNT: syncCount,
      STARTUP_SECONDS: '1',
      EVAL_SECONDS: '1',
      STEP_SECONDS: '0.02',
      ...overrides.env,
    },
  };
}

beforeAll(async () => {
  stack = await startStack({ name: 'budget', host: 'budgethost', cpuSlots: 2 });
  source = await makeRepo({ 'uv.lock': LOCK, 'pyproject.toml': PYPROJECT }, AUTORESEARCH);
  syncCount = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-syncs-')), 'syncs.txt');
});
afterAll(async () => stack?.stop());

const syncs = async () => (await fs.readFile(syncCount, 'utf8').catch(() => '')).split('\n').filter(Boolean).length;

describe('budgets, setup and timings on autoresearch output', () => {
  it('2 s setup + 1 s startup + 4 s training + 1 s evaluation completes under the default limits; the second run reuses the environment', async () => {
    const first = await submitExperiment(stack.client, request({ tag: 'budget', env: { VAL_BPB: '0.997900' } }));
    const result = await first.handle.result();
    if (result.status !== 'completed')
      console.error('first run:', (await first.handle.query(experimentStateQuery)).training?.timings);
    expect(result).toMatchObject({ status: 'completed', metric: 0.9979, decision: 'keep' });
    const state = await first.handle.query(experimentStateQuery);
    const timings = state.training!.timings;
    expect(state.training!.phase).toBe('training');
    expect(timings.setupCached).toBe(false);
    expect(timings.setupSeconds).toBeGreaterThanOrEqual(2);
    expect(timings.setupSeconds).toBeLessThan(8);
    expect(timings.startupSeconds).toBeGreaterThanOrEqual(0.9);
    expect(timings.startupSeconds).toBeLessThan(3);
    expect(timings.trainingSeconds).toBeGreaterThanOrEqual(4);
    expect(timings.trainingSeconds).toBeLessThan(4.5);
    expect(timings.evaluationSeconds).toBeGreaterThanOrEqual(0.9);
    expect(timings.evaluationSeconds).toBeLessThan(3);
    expect(timings.totalSeconds).toBe(state.training!.metrics!.total_seconds);
    // The kill limit (8 s) would have been spent if it counted setup; it counts from the training start.
    expect(timings.processSeconds! + timings.setupSeconds!).toBeGreaterThan(8);
    expect(timings.processSeconds).toBeLessThan(8);
    expect(timings.processSeconds).toBeGreaterThanOrEqual(timings.totalSeconds!);
    const log = await fs.readFile(state.training!.logPath, 'utf8');
    expect(log).toMatch(
      /expctl: setup: ===== uv sync --frozen --no-install-project .*=====\n[\s\S]*expctl: setup: ===== end of uv sync .*: exit code 0 =====\n[\s\S]*expctl: training starts/,
    );
    expect(await syncs()).toBe(1);

    // This run checks the cache; a generous kill limit keeps it independent of this machine's load.
    const second = await submitExperiment(
      stack.client,
      request({ tag: 'budget', timeoutSeconds: 60, env: { VAL_BPB: '0.990000' } }),
    );
    expect(await second.handle.result()).toMatchObject({ status: 'completed', decision: 'keep', metric: 0.99 });
    const again = (await second.handle.query(experimentStateQuery)).training!.timings;
    expect(again.setupCached).toBe(true);
    expect(again.setupSeconds).toBeLessThan(1);
    expect(again.trainingSeconds).toBeGreaterThanOrEqual(4);
    expect(await syncs()).toBe(1);
  });

  it('a run that ignores its budget is killed at its kill limit (--timeout 5), counted from the training start, and nothing survives', async () => {
    const pidFile = path.join(os.tmpdir(), `expctl-budget-${process.pid}.pid`);
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'overrun', timeoutSeconds: 5, env: { MODE: 'ignore_budget', PID_FILE: pidFile } }),
    );
    const result = await handle.result();
    const pid = Number(await fs.readFile(pidFile, 'utf8'));
    expect(pid).toBeGreaterThan(0);
    expect(result.status).toBe('timed_out');
    const state = await handle.query(experimentStateQuery);
    expect(state.training).toMatchObject({ phase: 'training', timedOut: true });
    expect(state.training!.timings.processSeconds).toBeGreaterThanOrEqual(5);
    await waitFor(async () => !processAlive(pid), 15_000);
    await fs.rm(pidFile, { force: true });
  });

  it('a failing setup ends the run in phase setup, never starts training, and leaves no ready environment', async () => {
    const broken = await makeRepo({ 'uv.lock': `${LOCK}# broken\n`, 'pyproject.toml': PYPROJECT }, AUTORESEARCH);
    const pidFile = path.join(os.tmpdir(), `expctl-budget-setup-${process.pid}.pid`);
    const { handle } = await submitExperiment(
      stack.client,
      request({
        tag: 'setupfail',
        repo: broken.repo,
        commit: broken.commit,
        env: { FAKE_UV_SYNC_FAIL: '1', FAKE_UV_SYNC_SECONDS: '0', PID_FILE: pidFile },
      }),
    );
    const result = await handle.result();
    expect(result.status).toBe('command_failed');
    const state = await handle.query(experimentStateQuery);
    expect(state.training).toMatchObject({ phase: 'setup', exitCode: 1, timedOut: false, metrics: null });
    expect(state.training!.timings).toMatchObject({ setupCached: false, processSeconds: null, trainingSeconds: null });
    expect(state.training!.logTail).toContain('Failed to download');
    await expect(fs.access(pidFile)).rejects.toThrow();
    const envs = path.join(stack.workDir, 'budgethost', 'envs');
    const markers = (await fs.readdir(envs, { recursive: true })).filter((file) => file.endsWith('ready'));
    expect(markers).toHaveLength(1); // only the environment of the good lockfile

    const slow = await submitExperiment(
      stack.client,
      request({
        tag: 'setupfail',
        repo: broken.repo,
        commit: broken.commit,
        setupTimeoutSeconds: 1,
        env: { FAKE_UV_SYNC_SECONDS: '60', PID_FILE: pidFile },
      }),
    );
    expect((await slow.handle.result()).status).toBe('timed_out');
    expect((await slow.handle.query(experimentStateQuery)).training).toMatchObject({ phase: 'setup', timedOut: true });
    await expect(fs.access(pidFile)).rejects.toThrow();
  });
});

describe('confined validation on the worker', () => {
  it('refuses a program outside the repository and a dataset symlink leaving the datasets root, before any lease', async () => {
    const datasets = path.join(stack.workDir, 'budgethost', 'datasets');
    await fs.mkdir(datasets, { recursive: true });
    await fs.symlink('/etc', path.join(datasets, 'escape'));
    const cases: [Partial<ExperimentRequestInput>, RegExp][] = [
      [
        { command: ['../../bin/sh'] },
        /the command's program \.\.\/\.\.\/bin\/sh is outside the repository: name the program on PATH .* or by its path inside the repository/,
      ],
      [
        { datasets: ['escape/passwd'] },
        /dataset escape\/passwd resolves to \/etc\/passwd, outside the datasets root of budgethost/,
      ],
      [
        { command: ['python3', '/etc/passwd.py'] },
        /\/etc\/passwd\.py \(named in the command\) is outside the repository/,
      ],
    ];
    // A program committed as a symlink that leaves the repository, and one committed without its x bit.
    const linked = await makeRepo({ 'plain.sh': '#!/bin/sh\necho hi\n' }, AUTORESEARCH);
    await fs.symlink('/bin/sh', path.join(linked.repo, 'run.sh'));
    const linkedCommit = await commitAll(linked.repo, 'a symlink to the host shell');
    cases.push(
      [
        { repo: linked.repo, commit: linkedCommit, command: ['./run.sh'] },
        /the command's program \.\/run\.sh is a symlink to \/bin\/sh, outside the repository/,
      ],
      [
        { repo: linked.repo, commit: linkedCommit, command: ['./plain.sh'] },
        /the command's program \.\/plain\.sh is not executable in commit [0-9a-f]{12}: run it through its interpreter/,
      ],
    );
    for (const [overrides, reason] of cases) {
      const { handle } = await submitExperiment(stack.client, request({ tag: 'refused', ...overrides }));
      const result = await handle.result();
      expect(result.status).toBe('validation_failed');
      expect(result.reason).toMatch(reason);
      const state = await handle.query(experimentStateQuery);
      expect(state.placement).toBeNull();
      expect(state.attempts).toBe(0);
    }
  });
});
