import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import {
  detectContainment,
  removeWorkerCgroups,
  runContainmentOf,
  runProcessesLeft,
  type ContainmentSupport,
} from '../../src/gpu-worker/containment.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { poolStateQuery } from '../../src/workflows/definitions.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

// End to end: a 4-GPU request on a host of 8 fake H100s in two NVLink islands runs a torchrun-like
// launcher (one worker process per GPU) until its kill limit; nothing of it may be left afterwards.

const HOST = 'gangclean';
let stack: TestStack;
let source: { repo: string; commit: string };
let support: ContainmentSupport;

beforeAll(async () => {
  stack = await startStack({ name: 'gang-cleanup', host: HOST, fleet: 'eight-h100-two-islands.csv' });
  source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'torchrun_like.py'));
  support = await detectContainment(path.join(stack.workDir, HOST));
});
afterAll(async () => {
  await stack?.stop();
  if (support) expect(await removeWorkerCgroups(support)).toBe(true);
});

describe('a K-GPU run killed by its limit', () => {
  it('leaves no process on any of its GPUs, and each worker saw exactly the four GPUs of one island', async () => {
    const reports = path.join(stack.workDir, 'gang-reports');
    await fs.mkdir(reports);
    const { handle } = await submitExperiment(stack.client, {
      tag: 'gang-limit',
      hypothesis: 'every process of a 4-GPU run dies at its kill limit',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      timeBudgetSeconds: 1,
      timeoutSeconds: 20,
      requirements: { acceleratorClass: 'h100', gpuMemoryMb: 0, runtimeTags: [], gpus: 4 },
      env: { GANG_REPORT_DIR: reports, IGNORE_TERM: '1' },
    });
    const rankFiles = [0, 1, 2, 3].map((rank) => path.join(reports, `rank-${rank}.json`));
    await waitFor(async () => (await Promise.all(rankFiles.map(fileExists))).every(Boolean), 120_000);
    const ranks = await Promise.all(
      rankFiles.map(
        async (file) =>
          JSON.parse(await fs.readFile(file, 'utf8')) as { pid: number; cuda_visible_devices: string; device: string },
      ),
    );
    const launcher = JSON.parse(await fs.readFile(path.join(reports, 'launcher.json'), 'utf8')) as { pid: number };

    // While it runs, the pool holds one lease on all four GPUs of it.
    const leased = (await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery)).slots.filter(
      (entry) => entry.lease?.experimentId === handle.workflowId,
    );
    const visible = ranks[0]!.cuda_visible_devices;
    expect(leased.map((entry) => entry.slot.index).join(',')).toBe(visible);
    expect(['0,1,2,3', '4,5,6,7']).toContain(visible);
    expect(ranks.every((rank) => rank.cuda_visible_devices === visible)).toBe(true);
    expect(ranks.map((rank) => rank.device)).toEqual(visible.split(','));

    const result = await handle.result();
    expect(result.status).toBe('timed_out');
    const pids = [launcher.pid, ...ranks.map((rank) => rank.pid)];
    expect(pids.filter(processAlive)).toEqual([]);
    const run = runContainmentOf(support, handle.workflowId);
    expect(await runProcessesLeft(run, { supervisorPid: -1 })).toEqual([]);
    // Its GPUs are free again, all four together.
    await waitFor(
      async () =>
        (await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery)).slots.every(
          (entry) => entry.lease === null,
        ),
      30_000,
    );
  });
});
