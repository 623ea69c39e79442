import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { CheckpointDocument } from '../../src/domain/checkpoints.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { attemptDocument } from '../../src/store/fence.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { EXPCTL, outputOf, runCli } from '../helpers/cli.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { configurePool, FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { resultWithin, waitFor } from '../helpers/wait.js';

// The acceptance test: a checkpointing run whose host is killed outright (worker,
// supervisor and training at once) completes on another host, resumed from its last synced
// checkpoint, and its first attempt's log and record outlive the host.

const SCRIPT = path.join(FIXTURES, 'scripts', 'checkpoint_train.py');
/** Host A's fencing time: the pool re-places its lost run only after it (and the kill grace) passed. */
const FENCING_SECONDS = 6;

let stack: TestStack;
let source: { repo: string; commit: string };
let scratch: string;
const workers: ResultPromise[] = [];

/** `expctl worker` as its own process, with its own work directory and host name, online in the pool. */
async function startWorkerProcess(host: string, extraArgs: string[] = []): Promise<{ child: ResultPromise }> {
  const child = execa(
    process.execPath,
    [EXPCTL, 'worker', '--host', host, '--cpu-slots', '1', '--heartbeat', '2', '--runtime-tag', 'long-run']
      .concat(extraArgs)
      .concat(['--work-dir', path.join(stack.workDir, host)]),
    { env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace }, reject: false },
  );
  workers.push(child);
  const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
  await waitFor(
    async () => (await pool.query(poolStateQuery).catch(() => undefined))?.hosts[host]?.online === true,
    90_000,
  );
  return { child }; // wrapped: an execa subprocess is thenable
}

/** SIGKILL; a process already gone with another of the host's (its parent's death may take it) is fine. */
function killOutright(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** The script's starts, in order: its pid and when it started (epoch ms). */
async function starts(ledger: string): Promise<{ pid: number; startedMs: number }[]> {
  const text = await fs.readFile(ledger, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as { pid: number; started: number })
    .map(({ pid, started }) => ({ pid, startedMs: started * 1000 }));
}

/** The step a checkpoint document's newest file holds (`step-N.ckpt`, written as `{"step": N}`). */
async function newestStep(document: CheckpointDocument): Promise<number> {
  const files = document.files.filter((file) => /^step-\d+\.ckpt$/.test(file.path));
  const newest = files.sort((a, b) => Number(b.path.slice(5, -5)) - Number(a.path.slice(5, -5)))[0];
  if (!newest) return 0;
  const held = JSON.parse((await stack.store.getBytes(newest.sha256)).toString('utf8')) as { step: number };
  expect(held.step).toBe(Number(newest.path.slice(5, -5)));
  return held.step;
}

beforeAll(async () => {
  // No in-process GPU worker: the run's two hosts are `expctl worker` processes, so one can be killed.
  stack = await startStack({ name: 'long-run', gpuWorker: false });
  source = await makeRepo({}, SCRIPT);
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-long-run-'));
});
afterAll(async () => {
  for (const child of workers) child.kill('SIGKILL');
  await Promise.allSettled(workers);
  await stack?.stop();
  await fs.rm(scratch, { recursive: true, force: true });
});

describe('a long run whose host is killed outright', () => {
  it('resumes on another host from its last synced checkpoint; its first attempt, log and lost time outlive the host', async () => {
    const { child: hostA } = await startWorkerProcess('long-a', ['--fencing-time', String(FENCING_SECONDS)]);
    // A killed host is declared lost after 10 s of silence (its workers report every 2 s).
    await configurePool(stack.client, { heartbeatLimitMs: 10_000 });
    const ledger = path.join(scratch, 'ledger.jsonl');
    const { experimentId, handle } = await submitExperiment(stack.client, {
      tag: 'long-run',
      hypothesis: 'a run whose host dies resumes from its last checkpoint',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['long-run'] },
      maxReplacements: 1,
      timeBudgetSeconds: 300,
      // A checkpoint every 2 s (4 steps of 0.5 s); 120 steps, so host A dies long before the end.
      // Resumed, a step takes 0.05 s: only where attempt 2 goes on is checked, not how long it trains.
      env: {
        LEDGER: ledger,
        STEPS: '120',
        STEP_SECONDS: '0.5',
        RESUMED_STEP_SECONDS: '0.05',
        CHECKPOINT_EVERY: '4',
        VAL_BPB: '1.2',
      },
    });
    const t0 = Date.now();
    const runDir = path.join(stack.workDir, 'long-a', 'runs', experimentId);

    // Leased to host A, the run trains there until the store holds a synced checkpoint past step 0;
    // host B starts meanwhile (the run already holds A's lease) and stays idle until host A dies.
    await waitFor(async () => (await handle.query(experimentStateQuery)).status === 'running', 90_000);
    const hostB = startWorkerProcess('long-b');
    hostB.catch(() => undefined); // awaited below; a failure fails the test there
    await waitFor(async () => {
      const document = await stack.store.getDocument<CheckpointDocument>(
        attemptDocument(experimentId, 1, 'checkpoint'),
      );
      return document !== null && (await newestStep(document)) > 0;
    }, 120_000);
    console.log(`long run: a synced checkpoint after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect((await handle.query(experimentStateQuery)).status).toBe('running');
    const [first] = await starts(ledger);
    expect(first).toBeDefined();
    const supervisor = Number(await fs.readFile(path.join(runDir, 'supervisor.pid'), 'utf8'));
    const doomed = [hostA.pid!, supervisor, first!.pid];
    for (const pid of doomed) expect(processAlive(pid), `pid ${pid} alive before the kill`).toBe(true);

    // Host B is online, then host A dies outright: its worker, the run's supervisor and the training, all at once.
    await hostB;
    const killedAt = Date.now();
    for (const pid of doomed) killOutright(pid);
    await waitFor(async () => doomed.every((pid) => !processAlive(pid)), 30_000);
    const deadAt = Date.now();
    // Nothing of host A writes any more: its last synced checkpoint is final.
    const lastSynced = (await stack.store.getDocument<CheckpointDocument>(
      attemptDocument(experimentId, 1, 'checkpoint'),
    ))!;
    const lastSyncedStep = await newestStep(lastSynced);
    // The checkpoint holds the training done when its newest file was written, less than had passed when it was synced.
    expect(lastSynced.trainingSeconds).toBeGreaterThanOrEqual(lastSyncedStep * 0.5);
    expect(lastSynced.trainingSeconds).toBeLessThan((Date.parse(lastSynced.syncedAt) - first!.startedMs) / 1000);

    console.log(`long run: host A killed; last synced step ${lastSyncedStep}`);
    const result = await resultWithin(handle, 240_000);
    expect(result).toMatchObject({ status: 'completed', metric: 1.2, worker: 'long-b' });
    const state = await handle.query(experimentStateQuery);
    expect(state.attempts).toBe(2);

    // No overlap: the second training started only after the first training process was dead.
    const ledgerStarts = await starts(ledger);
    expect(ledgerStarts).toHaveLength(2);
    const second = ledgerStarts[1]!;
    expect(second.pid).not.toBe(first!.pid);
    expect(second.startedMs).toBeGreaterThan(deadAt);

    // It resumed from the latest synced checkpoint, not from zero (the script on B says so).
    const logB = await fs.readFile(path.join(stack.workDir, 'long-b', 'runs', experimentId, 'train.log'), 'utf8');
    const resumedLine = /resumed from step (\d+) \(EXPCTL_RESUMED_FROM=(\S+)\)/.exec(logB);
    expect(resumedLine, logB.slice(0, 2000)).not.toBeNull();
    const resumedStep = Number(resumedLine![1]);
    expect(resumedStep).toBeGreaterThan(0);
    expect(resumedStep).toBe(lastSyncedStep);
    expect(resumedLine![2]).toBe(`1@${lastSynced.syncedAt}`);
    expect(logB).not.toContain('starting from step 0');
    expect(logB).toContain(`step ${String(resumedStep + 1).padStart(5, '0')}/00120`);
    expect(logB).not.toContain(`step ${String(resumedStep).padStart(5, '0')}/00120`);

    // The record: both attempts with their hosts, what the second resumed from, what the first lost.
    const cliEnv = {
      TEMPORAL_ADDRESS: stack.address,
      TEMPORAL_NAMESPACE: stack.namespace,
      EXPCTL_CATALOG: stack.catalogPath,
    };
    // Run as an agent would, from a directory that is not the expctl checkout.
    const elsewhere = { cwd: scratch };
    const shown = outputOf('show', await runCli(cliEnv, ['show', experimentId, '--json'], elsewhere));
    const attempts = shown.attempt_records as {
      attempt: number;
      host: string;
      ended: string;
      started_at: string;
      resumed_from: { experiment_id: string; attempt: number; written_at: string; training_seconds: number } | null;
      trained_seconds: number | null;
      lost_seconds: number | null;
    }[];
    expect(attempts.map((a) => [a.attempt, a.host, a.ended])).toEqual([
      [1, 'long-a', 'lost'],
      [2, 'long-b', 'completed'],
    ]);
    const [lost, resumed] = attempts;
    expect(lost!.resumed_from).toBeNull();
    expect(resumed!.resumed_from).toEqual({
      experiment_id: experimentId,
      attempt: 1,
      written_at: lastSynced.syncedAt,
      training_seconds: lastSynced.trainingSeconds,
    });
    expect(lost!.trained_seconds, 'attempt 1 trained seconds').not.toBeNull();
    expect(lost!.lost_seconds, 'attempt 1 training time lost').not.toBeNull();
    expect(lost!.lost_seconds).toBeCloseTo(
      Math.max(0, Math.round((lost!.trained_seconds! - lastSynced.trainingSeconds) * 10) / 10),
      1,
    );
    // What it trained by its last heartbeat cannot exceed what it trained until the kill.
    const trainedUntilKill = (killedAt - first!.startedMs) / 1000;
    expect(lost!.trained_seconds!).toBeLessThanOrEqual(trainedUntilKill + 1);
    // Attempt 2 was leased only after attempt 1's training was dead.
    expect(Date.parse(resumed!.started_at)).toBeGreaterThan(deadAt);

    // Attempt 1's lines, with host A gone, from the fleet store; attempt 2's from host B.
    const logs = await runCli(cliEnv, ['logs', '--all', experimentId], elsewhere);
    expect(logs.exitCode, String(logs.stderr)).toBe(0);
    expect(logs.stderr).toMatch(
      /attempt 1 \(on long-a\), read from the fleet store \(as last shipped [\dT:.-]+Z: its last seconds may be missing\)/,
    );
    expect(logs.stderr).toContain(`expctl: ${experimentId}: attempt 2, read from the host long-b`);
    const out = String(logs.stdout);
    const firstAt = out.indexOf('on long-a/cpu0');
    const secondAt = out.indexOf('on long-b/cpu0');
    expect(firstAt).toBeGreaterThanOrEqual(0);
    expect(secondAt).toBeGreaterThan(firstAt);
    expect(out.slice(firstAt, secondAt)).toContain('starting from step 0');
    expect(out.slice(firstAt, secondAt)).toContain(`step ${String(lastSyncedStep).padStart(5, '0')}/00120`);
    expect(out.slice(secondAt)).toContain(`resumed from step ${resumedStep}`);

    console.log(
      `long run: attempt 1 killed with its last synced checkpoint at step ${lastSyncedStep} ` +
        `(${lastSynced.trainingSeconds} s of training); attempt 2 resumed from step ${resumedStep}, leased ` +
        `${((Date.parse(resumed!.started_at) - killedAt) / 1000).toFixed(1)} s and training ` +
        `${((second.startedMs - killedAt) / 1000).toFixed(1)} s after the kill; attempt 1 trained ` +
        `${lost!.trained_seconds} s by its last heartbeat (${trainedUntilKill.toFixed(1)} s until the kill) ` +
        `and lost ${lost!.lost_seconds} s by the record`,
    );
  }, 480_000);
});
