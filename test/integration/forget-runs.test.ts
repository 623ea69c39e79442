import fs from 'node:fs/promises';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import type { RunContainment } from '../../src/gpu-worker/containment.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { EXPCTL } from '../helpers/cli.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { configurePool, startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

// A restarted worker forgets runs that ended while it was away (their experiment closed, or their
// supervisor killed them for want of a worker): it does not keep them "for their experiment to
// re-attach", and it removes their cgroups.
const HOST = 'lethe';
let stack: TestStack;
let source: { repo: string; commit: string };
const workers = new Set<ResultPromise>();

/** `expctl worker` as its own process, registered with the pool before this returns; `output()` is its stderr so far. */
async function startWorker(): Promise<{ child: ResultPromise; output: () => string }> {
  const child = execa(
    process.execPath,
    [
      EXPCTL,
      'worker',
      '--host',
      HOST,
      '--cpu-slots',
      '1',
      '--orphan-grace',
      '5',
      '--heartbeat',
      '2',
      '--work-dir',
      path.join(stack.workDir, HOST),
    ],
    { env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace }, reject: false },
  );
  workers.add(child);
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
  const before = (await pool.query(poolStateQuery).catch(() => undefined))?.hosts[HOST]?.registeredAt ?? 0;
  await waitFor(async () => {
    const entry = (await pool.query(poolStateQuery).catch(() => undefined))?.hosts[HOST];
    return entry?.online === true && entry.registeredAt > before;
  }, 90_000);
  return { child, output: () => stderr }; // wrapped: an execa subprocess is thenable
}

async function killWorker(child: ResultPromise, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  child.kill(signal);
  await child;
  workers.delete(child);
}

beforeAll(async () => {
  stack = await startStack({ name: 'forget', gpuWorker: false });
  source = await makeRepo();
}, 300_000);
afterAll(async () => {
  for (const child of workers) child.kill('SIGKILL');
  await Promise.allSettled([...workers]);
  await stack?.stop();
  if (source) await fs.rm(source.repo, { recursive: true, force: true });
});

describe('a restarted worker', () => {
  it('forgets a run that ended while it was away, removes its cgroup, and never looks at it again', async () => {
    const first = await startWorker();
    // The pool notices the killed host's silence in 8 s (its default is 60 s; the worker reports every 2 s).
    await configurePool(stack.client, { heartbeatLimitMs: 8_000 });
    const { handle } = await submitExperiment(stack.client, {
      tag: 'forget',
      hypothesis: 'a run lost long ago is not kept',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      maxReplacements: 0,
      env: { STEPS: '2000', STEP_SECONDS: '0.25' },
    });
    const id = handle.workflowId;
    const files = runFiles(path.join(stack.workDir, HOST), id);
    await waitFor(
      async () =>
        (await handle.query(experimentStateQuery)).status === 'running' &&
        (await fileExists(files.record)) &&
        (await fileExists(files.started)),
      90_000,
    );
    const record = JSON.parse(await fs.readFile(files.record, 'utf8')) as {
      supervisorPid: number;
      planned: RunContainment;
    };
    const cgroupDirs = record.planned.cgroup?.dirs ?? [];
    for (const dir of cgroupDirs) expect(await fileExists(dir)).toBe(true);

    // The worker dies; after the orphan grace the supervisor kills the run and records why.
    await killWorker(first.child);
    await waitFor(async () => !processAlive(record.supervisorPid), 60_000);
    expect(JSON.parse(await fs.readFile(files.exit, 'utf8'))).toMatchObject({
      orphaned: expect.stringMatching(/^orphaned: no worker for \d+s$/),
    });
    // The experiment ends without it (its host is gone): closed, with a named state.
    const result = await handle.result();
    expect(result.status).not.toBe('completed');
    expect(await fileExists(files.outcome)).toBe(false);

    // Started again: the run is forgotten, not kept, and its cgroup is gone.
    const second = await startWorker();
    await waitFor(async () => second.output().includes(`forgot ${id}`), 30_000);
    expect(second.output()).toContain(
      `expctl worker: forgot ${id} (supervisor ${record.supervisorPid}): its experiment is closed; its cgroup is removed`,
    );
    expect(second.output()).not.toContain(`kept ${id}`);
    for (const dir of cgroupDirs) expect(await fileExists(dir)).toBe(false);
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.slots.find((s) => s.slot.host === HOST)?.lease ?? null).toBeNull();
    // Its log stays readable; the run's pid file is gone, so the next start says nothing of it.
    expect(await fs.readFile(files.log, 'utf8')).toContain('orphaned: no worker for');
    await killWorker(second.child, 'SIGTERM');
    const third = await startWorker();
    expect(third.output()).not.toContain(id);
    await killWorker(third.child, 'SIGTERM');
  });
});
