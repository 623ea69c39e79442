import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import {
  detectContainment,
  removeWorkerCgroups,
  runContainmentOf,
  runProcessesLeft,
  type ContainmentSupport,
} from '../../src/gpu-worker/containment.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

const HOST = 'containhost';
let stack: TestStack;
let source: { repo: string; commit: string };
let support: ContainmentSupport;

function request(overrides: Partial<ExperimentRequestInput> & { tag: string }): ExperimentRequestInput {
  return {
    hypothesis: 'the run stays contained',
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 30,
    ...overrides,
  };
}

/** Nothing of the experiment's run is left on the worker: no process in its containment, no cgroup directory. */
async function expectNothingLeft(experimentId: string, pids: number[]): Promise<void> {
  for (const pid of pids) expect(processAlive(pid), `pid ${pid} of ${experimentId}`).toBe(false);
  const run = runContainmentOf(support, experimentId);
  expect(await runProcessesLeft(run, { supervisorPid: -1 })).toEqual([]);
  for (const dir of run.cgroup?.dirs ?? []) await expect(fs.access(dir)).rejects.toThrow();
}

async function pool() {
  return stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
}

beforeAll(async () => {
  stack = await startStack({ name: 'containment', host: HOST, cpuSlots: 2 });
  source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'escape.py'));
  support = await detectContainment(path.join(stack.workDir, HOST));
});
afterAll(async () => {
  await stack?.stop();
  if (support) expect(await removeWorkerCgroups(support)).toBe(true);
});

describe('every process of a run dies with it', () => {
  it('a setsid + double-forked grandchild does not survive the decision', async () => {
    const escapePidFile = path.join(stack.workDir, 'escape.pid');
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'escape', env: { MODE: 'escape', ESCAPE_PID_FILE: escapePidFile, VAL_BPB: '0.9' } }),
    );
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'completed', metric: 0.9 });
    await expectNothingLeft(handle.workflowId, [Number(await fs.readFile(escapePidFile, 'utf8'))]);
    const training = (await handle.query(experimentStateQuery)).training!;
    expect(training.containment).toBe(
      support.cgroups ? `cgroup-v${support.cgroups.version}` : support.pidNamespace ? 'pid-namespace' : 'process-group',
    );
    if (support.cgroups?.version === 1 || training.peakMemoryBytes !== null) {
      expect(training.peakMemoryBytes).toBeGreaterThan(0);
      expect(training.oomKills).toBe(0);
    }
    console.log(
      `escape: ${training.containment}, peak ${training.peakMemoryBytes} bytes, oom kills ${training.oomKills}`,
    );
  });

  it('a script that kills its own supervisor ends command_failed, and the lease outlives its processes', async () => {
    const pidFile = path.join(stack.workDir, 'kill-parent.pid');
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'parricide', env: { MODE: 'kill-parent', PID_FILE: pidFile } }),
    );
    const result = await handle.result();
    expect(result.status).toBe('command_failed');
    const training = (await handle.query(experimentStateQuery)).training!;
    expect(training.supervisorKilled).toBe(true);
    expect(training.logTail).toContain("the run's supervisor was killed");
    await expectNothingLeft(handle.workflowId, [Number(await fs.readFile(pidFile, 'utf8'))]);
    expect((await pool()).slots.filter((s) => s.lease?.experimentId === handle.workflowId)).toHaveLength(0);
  });

  it('cancel kills an escaped grandchild before the lease is released', async () => {
    const escapePidFile = path.join(stack.workDir, 'cancel-escape.pid');
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'cancel', env: { MODE: 'hang-escape', ESCAPE_PID_FILE: escapePidFile } }),
    );
    await waitFor(
      async () => (await handle.query(experimentStateQuery)).status === 'running' && (await fileExists(escapePidFile)),
      60_000,
    );
    const escaped = Number(await fs.readFile(escapePidFile, 'utf8'));
    expect(processAlive(escaped)).toBe(true);
    await handle.cancel();
    expect((await handle.result()).status).toBe('canceled');
    await expectNothingLeft(handle.workflowId, [escaped]);
    expect((await pool()).slots.filter((s) => s.lease?.experimentId === handle.workflowId)).toHaveLength(0);
  });

  it('a timeout kills an escaped grandchild that ignores SIGTERM', async () => {
    const escapePidFile = path.join(stack.workDir, 'timeout-escape.pid');
    // A kill limit long enough for the grandchild to escape first, even on a loaded machine.
    const { handle } = await submitExperiment(
      stack.client,
      request({
        tag: 'timeout',
        timeBudgetSeconds: 1,
        timeoutSeconds: 12,
        env: { MODE: 'hang-escape', ESCAPE_PID_FILE: escapePidFile },
      }),
    );
    await waitFor(async () => fileExists(escapePidFile), 60_000);
    expect((await handle.result()).status).toBe('timed_out');
    await expectNothingLeft(handle.workflowId, [Number(await fs.readFile(escapePidFile, 'utf8'))]);
  });
});

describe('huge output', () => {
  it('one 50 MB line, then the metric block: the run completes and the worker stays small', async () => {
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 50);
    try {
      const { handle } = await submitExperiment(
        stack.client,
        request({ tag: 'bigline', env: { MODE: 'bigline', BIGLINE_MB: '50', VAL_BPB: '1.125' } }),
      );
      const result = await handle.result();
      expect(result).toMatchObject({ status: 'completed', metric: 1.125 });
      const training = (await handle.query(experimentStateQuery)).training!;
      expect(Buffer.byteLength(training.logTail)).toBeLessThanOrEqual(64 * 1024);
      expect(training.logTail).toMatch(/bytes cut by expctl/);
    } finally {
      clearInterval(sampler);
    }
    const growthMb = (peak - before) / 1024 / 1024;
    console.log(
      `50 MB line: worker process RSS ${(before / 1024 / 1024).toFixed(0)} MB -> peak ${(peak / 1024 / 1024).toFixed(0)} MB (growth ${growthMb.toFixed(1)} MB)`,
    );
    expect(growthMb).toBeLessThan(200);
  });
});
