import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cancelExperiment, submitExperiment } from '../../src/client/experiments.js';
import { outputOf, runCli } from '../helpers/cli.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import { openStore } from '../../src/store/open.js';
import { attemptWriter, claimFence } from '../../src/store/fence.js';
import { StoreError } from '../../src/store/store.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { resultWithin, waitFor } from '../helpers/wait.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { configurePool, startStack, type TestStack } from '../helpers/stack.js';
import { startWorkerProcess } from '../helpers/worker-process.js';

const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));

let stack: TestStack;
let source: { repo: string; commit: string };
const workers: ResultPromise[] = [];

/** The experiment the frozen worker's test ran (two attempts), for the CLI's tests. */
let fencedId: string | undefined;

const readPid = async (file: string) => Number(await fs.readFile(file, 'utf8').catch(() => '0'));

beforeAll(async () => {
  stack = await startStack({ name: 'fencing', gpuWorker: false });
  source = await makeRepo();
});
afterAll(async () => {
  for (const child of workers) {
    // A frozen worker is thawed first, so it can die (an exited one is skipped).
    if (child.pid && processAlive(child.pid)) process.kill(child.pid, 'SIGCONT');
    child.kill('SIGKILL');
  }
  await stack?.stop();
});

/** `expctl worker` as its own process (so it can be frozen or killed), online in the pool. */
async function startWorker(host: string, extraArgs: string[]): Promise<{ child: ResultPromise }> {
  const started = await startWorkerProcess(stack, host, { args: ['--heartbeat', '2', ...extraArgs] });
  workers.push(started.child);
  return started;
}

describe('fencing: at most one attempt of a run trains at any moment', () => {
  it('a frozen worker: its supervisor stops the run within the fencing time, and only then is the run re-placed', async () => {
    const frozen = (await startWorker('frozen', ['--runtime-tag', 'fence-ok', '--fencing-time', '6'])).child;
    // The pool would notice the frozen host's silence in 30 s (its default is 60 s): the train task's
    // heartbeat timeout (10 s) comes first, and the experiment asks the host until its fence has passed.
    await configurePool(stack.client, { heartbeatLimitMs: 30_000 });
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    expect((await pool.query(poolStateQuery)).hosts.frozen?.fencing).toEqual({
      fencingSeconds: 6,
      killGraceSeconds: 5,
    });
    const pidFile = path.join(stack.workDir, 'fence-train.pid');
    // Says the budget it was given (a re-placed attempt's is what the lost one left), then trains:
    // 30 s the first time, past the fence; 5 steps once the pid file is there (a re-placed attempt,
    // of which only the start, the budget and the outcome are checked).
    const budgeted = await makeRepo({
      'budget.py': [
        'import os, runpy',
        'print("budget", os.environ["EXPCTL_TIME_BUDGET"], flush=True)',
        'if os.path.exists(os.environ["PID_FILE"]):',
        '    os.environ["STEPS"] = "5"',
        'runpy.run_path("train.py", run_name="__main__")',
        '',
      ].join('\n'),
    });
    const { handle } = await submitExperiment(stack.client, {
      tag: 'fence',
      hypothesis: 'a frozen worker never lets two attempts train at once',
      category: 'other',
      command: ['python3', 'budget.py'],
      repo: budgeted.repo,
      commit: budgeted.commit,
      requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['fence-ok'] },
      maxReplacements: 1,
      env: { VAL_BPB: '1.5', STEPS: '150', STEP_SECONDS: '0.2', PID_FILE: pidFile },
    });
    await waitFor(
      async () => (await handle.query(experimentStateQuery)).status === 'running' && (await readPid(pidFile)) > 0,
      90_000,
    );
    const first = await readPid(pidFile);
    expect(processAlive(first)).toBe(true);
    // A spare that can take the run, then the worker freezes: its supervisor and training go on alone.
    await stack.addGpuWorker({ host: 'fence-spare', cpuSlots: 1, runtimeTags: ['fence-ok'] });
    const frozenAt = Date.now();
    process.kill(frozen.pid!, 'SIGSTOP');
    // Attempt 1's synced checkpoint, in the store the spare reads: the re-placed attempt resumes,
    // so it is charged with what the first trained (a run with no checkpoint starts with its whole budget).
    await (
      await openStore()
    ).putDocument(`runs/${handle.workflowId}/attempts/1/checkpoint`, {
      attempt: 1,
      syncedAt: new Date().toISOString(),
      trainingSeconds: 5,
      files: [],
    });

    // Watched closely: when the first attempt's training ends, and whether a second starts before it.
    let firstGoneAt = 0;
    let secondSeenWhileFirstAlive = false;
    await waitFor(async () => {
      const current = await readPid(pidFile);
      const alive = processAlive(first);
      if (current !== first && current > 0 && alive) secondSeenWhileFirstAlive = true;
      if (!alive && firstGoneAt === 0) firstGoneAt = Date.now();
      return firstGoneAt > 0;
    }, 60_000);
    // The last confirmation (at most 5 s, the lease check's period, before the freeze), the fence
    // (6 s), the supervisor's kill grace (5 s), and slack for a loaded machine.
    expect(firstGoneAt - frozenAt).toBeLessThan(5_000 + 6_000 + 5_000 + 10_000);
    const exit = JSON.parse(
      await fs.readFile(path.join(stack.workDir, 'frozen', 'runs', handle.workflowId, 'exit.json'), 'utf8'),
    );
    expect(exit.orphaned).toMatch(/^fenced: no lease confirmation for \d+s$/);

    const result = await resultWithin(handle, 240_000);
    expect(result).toMatchObject({ status: 'completed', metric: 1.5, worker: 'fence-spare' });
    expect(secondSeenWhileFirstAlive).toBe(false);
    const second = await readPid(pidFile);
    expect(second).not.toBe(first);
    // The second attempt's training started (its pid file written) only after the first was gone.
    expect((await fs.stat(pidFile)).mtimeMs).toBeGreaterThan(firstGoneAt);

    const state = await handle.query(experimentStateQuery);
    fencedId = handle.workflowId;
    expect(state.attempts).toBe(2);
    const [lost, resumed] = state.attemptRecords!;
    expect(lost).toMatchObject({ attempt: 1, host: 'frozen', slotId: 'frozen/cpu0', ended: 'lost', carriedSeconds: 0 });
    expect(resumed).toMatchObject({ attempt: 2, host: 'fence-spare', ended: 'completed' });
    // Its lease was granted after the first attempt's training was gone, and after the fence surely passed.
    expect(Date.parse(resumed!.startedAt)).toBeGreaterThan(firstGoneAt);
    // Re-placed no sooner than the fence (6 s), the kill grace (5 s) and the margin (5 s) after the freeze.
    expect(Date.parse(resumed!.startedAt) - frozenAt).toBeGreaterThanOrEqual((6 + 5 + 5) * 1000);
    // What the first trained is carried (by its last heartbeat; null when the lease was revoked
    // before the heartbeat timeout told it); this script never checkpoints, so the second attempt
    // started from step 0 with its whole budget (a resumed one is charged: checkpoints.test.ts).
    expect(resumed!.carriedSeconds).toBe(lost!.trainedSeconds ?? 0);
    const spareLog = await fs.readFile(
      path.join(stack.workDir, 'fence-spare', 'runs', handle.workflowId, 'train.log'),
      'utf8',
    );
    expect(spareLog).toContain('budget 300\n');
    console.log(`attempt 1 trained ${lost!.trainedSeconds ?? '?'} s by its last heartbeat: ${lost!.why}`);
    // The catalog keeps the same record.
    const record = await stack.catalog.get(handle.workflowId);
    expect(record?.attemptRecords?.map((a) => [a.attempt, a.host, a.ended])).toEqual([
      [1, 'frozen', 'lost'],
      [2, 'fence-spare', 'completed'],
    ]);

    // The stale attempt's store writes: once attempt 2 holds the run's fence, attempt 1's are refused.
    const store = new FilesystemStore(await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-fence-store-')));
    const stale = { experimentId: handle.workflowId, attempt: 1, leaseId: 'lease-of-attempt-1' };
    await claimFence(store, stale);
    await claimFence(store, { experimentId: handle.workflowId, attempt: 2, leaseId: 'lease-of-attempt-2' });
    const refused = await attemptWriter(store, stale)
      .putAttemptDocument('checkpoint', { attempt: 1 })
      .catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(StoreError);
    expect((refused as StoreError).code).toBe('fenced');
    expect(await store.getDocument(`runs/${handle.workflowId}/attempts/1/checkpoint`)).toBeNull();

    // Thawed, the worker starts nothing again: its run was fenced and its lease is gone.
    process.kill(frozen.pid!, 'SIGCONT');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(processAlive(first)).toBe(false);
    expect(await readPid(pidFile)).toBe(second);
    console.log(
      `frozen worker: training stopped ${((firstGoneAt - frozenAt) / 1000).toFixed(1)} s after the freeze; attempt 2 leased ${((Date.parse(resumed!.startedAt) - firstGoneAt) / 1000).toFixed(1)} s after that`,
    );
  });

  it('a worker killed and restarted within the fencing window re-attaches: the run trains once', async () => {
    const args = ['--runtime-tag', 'phoenix-ok', '--fencing-time', '20'];
    const victim = (await startWorker('phoenix', args)).child;
    // The pool's default patience for a silent host: a restart is not a lost host.
    await configurePool(stack.client, { heartbeatLimitMs: 60_000 });
    const pidFile = path.join(stack.workDir, 'phoenix-train.pid');
    const stopFile = path.join(stack.workDir, 'phoenix-stop');
    const { handle } = await submitExperiment(stack.client, {
      tag: 'phoenix',
      hypothesis: 'a restarted worker is not a lost run',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['phoenix-ok'] },
      maxReplacements: 1,
      // Longer than the fence: the run lives on only if the restarted worker confirms its lease.
      env: { VAL_BPB: '1.75', STEPS: '250', STEP_SECONDS: '0.2', PID_FILE: pidFile, STOP_FILE: stopFile },
    });
    await waitFor(
      async () => (await handle.query(experimentStateQuery)).status === 'running' && (await readPid(pidFile)) > 0,
      90_000,
    );
    const training = await readPid(pidFile);
    const killedAt = Date.now();
    victim.kill('SIGKILL');
    await victim;
    await startWorker('phoenix', args);
    // Still training past the fence (20 s), the kill grace (5 s) and a margin after the kill: the
    // restarted worker confirmed its lease. Then it may end (the stop file) rather than run out its steps.
    await waitFor(async () => Date.now() - killedAt >= (20 + 5 + 5) * 1000, 60_000);
    expect(processAlive(training)).toBe(true);
    await fs.writeFile(stopFile, '');

    const result = await resultWithin(handle, 240_000);
    expect(result).toMatchObject({ status: 'completed', metric: 1.75, worker: 'phoenix' });
    // One training process, never started again.
    expect(await readPid(pidFile)).toBe(training);
    const state = await handle.query(experimentStateQuery);
    expect(state.attempts).toBe(1);
    expect(state.attemptRecords).toHaveLength(1);
    expect(state.attemptRecords![0]).toMatchObject({ attempt: 1, host: 'phoenix', ended: 'completed' });
    const log = await fs.readFile(path.join(stack.workDir, 'phoenix', 'runs', handle.workflowId, 'train.log'), 'utf8');
    expect(log).not.toMatch(/fenced: no lease confirmation/);
    expect(log).toContain('a restarted worker re-attached to this run');
  });

  it('expctl show lists each attempt; retry --resume is refused without a checkpoint and resumes with one', async () => {
    expect(fencedId).toBeDefined();
    const id = fencedId!;
    const env = {
      TEMPORAL_ADDRESS: stack.address,
      TEMPORAL_NAMESPACE: stack.namespace,
      EXPCTL_CATALOG: stack.catalogPath,
    };
    const shown = outputOf('show', await runCli(env, ['show', id, '--json']));
    const attempts = shown.attempt_records as { attempt: number; host: string; ended: string; resumed_from: unknown }[];
    expect(attempts.map((a) => [a.attempt, a.host, a.ended])).toEqual([
      [1, 'frozen', 'lost'],
      [2, 'fence-spare', 'completed'],
    ]);
    // The table a terminal gets (stdout made a terminal's, as the catalog and secrets tests do).
    const text = await execa(
      process.execPath,
      ['--import', 'data:text/javascript,process.stdout.isTTY=true', EXPCTL, 'show', id],
      { env, reject: false },
    );
    expect(text.stdout).toMatch(/^ {4}#1 frozen\/cpu0 .* lost: .*; started fresh; trained /m);
    expect(text.stdout).toMatch(/^ {4}#2 fence-spare\/cpu0 .* completed; /m);

    const storeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-retry-store-'));
    const refused = await runCli({ ...env, EXPCTL_STORE: storeDir } as never, ['retry', id, '--resume', '--json']);
    const refusedOut = String(refused.stdout);
    expect(refused.exitCode).toBe(2);
    expect(JSON.parse(refusedOut)).toEqual({
      error: 'validation_failed',
      message: expect.stringContaining(`--resume: ${id} left no checkpoint in the fleet store`),
    });

    await new FilesystemStore(storeDir).putDocument(`runs/${id}/attempts/2/checkpoint`, {
      attempt: 2,
      syncedAt: new Date().toISOString(),
      trainingSeconds: 20,
      files: [],
    });
    const resumed = await runCli({ ...env, EXPCTL_STORE: storeDir } as never, [
      'retry',
      id,
      '--resume',
      '--detach',
      '--json',
    ]);
    expect(resumed.exitCode, String(resumed.stderr)).toBe(0);
    const submitted = JSON.parse(String(resumed.stdout)) as {
      experiment_id: string;
      retry_of: string;
      changed: string;
    };
    expect(submitted).toMatchObject({
      retry_of: id,
      changed: expect.stringContaining(`resumes from ${id}'s latest checkpoint`),
    });
    await cancelExperiment(stack.client, submitted.experiment_id);
  });
});
