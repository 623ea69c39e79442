import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ActivityCancelledError, ActivityNotFoundError } from '@temporalio/client';
import { ActivityCancellationDetails, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrainingActivities, type RunWatch } from '../../src/activities/training.js';
import type { Slot } from '../../src/domain/fleet.js';
import { parseExperimentRequest } from '../../src/domain/request.js';
import { HostConfirmations } from '../../src/gpu-worker/host-confirmations.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { processAlive } from '../../src/shared/processes.js';
import { makeRepo } from '../helpers/repo.js';
import { waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

// The train activity in Temporal's own activity test environment, on real processes: which
// cancellations kill a run (an operator's, a revoked lease) and which leave it running (the
// server no longer knows the activity: a heartbeat timeout during an outage).

const slot: Slot = {
  slotId: 'solo/cpu0',
  host: 'solo',
  index: 0,
  uuid: 'cpu0',
  name: 'cpu',
  acceleratorClass: 'cpu',
  memoryMb: 0,
  taskQueue: 'expctl-slot-solo-cpu0',
  runtimeTags: [],
};
let workDir: string;
let source: { repo: string; commit: string };
/** The leases the pool no longer holds. */
const gone = new Set<string>(['gone']);
const hostRuns: Map<string, RunWatch> = new Map();
const activities = (on: Slot = slot) =>
  createTrainingActivities({
    slot: on,
    workDir: workDir,
    heartbeatIntervalMs: 200,
    killAfterMs: 1000,
    leaseHeld: async (_slotId, leaseId) => !gone.has(leaseId),
    leaseCheckIntervalMs: 200,
    hostRuns,
  });
let training: ReturnType<typeof createTrainingActivities>;

const request = (env: Record<string, string>) =>
  parseExperimentRequest({
    tag: 'detach',
    hypothesis: 'h',
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    env,
  });

beforeAll(async () => {
  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-detach-'));
  source = await makeRepo();
  training = activities();
});
afterAll(async () => {
  await fs.rm(workDir, { recursive: true, force: true });
});

describe('the train activity when cancelled', () => {
  it('refuses to start when the lease is gone', async () => {
    const env = new MockActivityEnvironment();
    const experimentId = 'exp-lease-gone';
    await expect(
      env.run(training.runTraining, { experimentId, request: request({ VAL_BPB: '1.0' }), slot, leaseId: 'gone' }),
    ).rejects.toThrow(/the lease gone on solo\/cpu0 is gone/);
    await expect(fs.access(runFiles(workDir, experimentId).record)).rejects.toThrow();
  });

  it('lets go of a run the server no longer knows, which finishes and is handed back by awaitTraining', async () => {
    const experimentId = 'exp-not-found';
    const files = runFiles(workDir, experimentId);
    const env = new MockActivityEnvironment();
    const running = env.run(training.runTraining, {
      experimentId,
      request: request({ VAL_BPB: '1.5', STEPS: '12', STEP_SECONDS: '0.25' }),
      slot,
      leaseId: 'l1',
    });
    await waitFor(async () => fileExists(files.record), 30_000);
    env.cancel('NOT_FOUND', new ActivityCancellationDetails({ notFound: true }));
    await expect(running).rejects.toBeInstanceOf(CancelledFailure);
    const { supervisorPid } = JSON.parse(await fs.readFile(files.record, 'utf8')) as { supervisorPid: number };
    expect(processAlive(supervisorPid)).toBe(true);

    const outcome = await new MockActivityEnvironment().run(training.awaitTraining, {
      experimentId,
      slot,
      leaseId: 'l1',
    });
    expect(outcome).toMatchObject({
      exitCode: 0,
      metrics: { val_bpb: 1.5 },
      timedOut: false,
      canceled: false,
      supervisorKilled: false,
    });
    expect(JSON.parse(await fs.readFile(files.outcome, 'utf8'))).toMatchObject({
      exitCode: 0,
      metrics: { val_bpb: 1.5 },
    });
    expect(processAlive(supervisorPid)).toBe(false);
    // A worker process started later finds the kept outcome.
    expect(
      await new MockActivityEnvironment().run(activities().awaitTraining, { experimentId, slot, leaseId: 'l1' }),
    ).toMatchObject({ metrics: { val_bpb: 1.5 } });
  });

  it('kills the run on a cancel the workflow asked for', async () => {
    const experimentId = 'exp-cancel';
    const files = runFiles(workDir, experimentId);
    const pidFile = path.join(workDir, 'cancel-train.pid');
    const env = new MockActivityEnvironment();
    const running = env.run(training.runTraining, {
      experimentId,
      request: request({ MODE: 'slow', PID_FILE: pidFile }),
      slot,
      leaseId: 'l2',
    });
    await waitFor(async () => fileExists(pidFile), 30_000);
    const trainingPid = Number(await fs.readFile(pidFile, 'utf8'));
    env.cancel('CANCELLED', new ActivityCancellationDetails({ cancelRequested: true }));
    await expect(running).rejects.toBeInstanceOf(CancelledFailure);
    expect(processAlive(trainingPid)).toBe(false);
    await expect(fs.access(files.outcome)).rejects.toThrow();
  });

  it('stops a run it let go once the pool has given its lease away', async () => {
    const experimentId = 'exp-lease-revoked';
    const files = runFiles(workDir, experimentId);
    const trainingPid = await startThenLetGo(experimentId, 'l3');
    expect(processAlive(trainingPid)).toBe(true);

    gone.add('l3');
    await waitFor(async () => !processAlive(trainingPid), 30_000);
    await waitFor(async () => !hostRuns.has(experimentId), 30_000);
    expect(await fs.readFile(files.log, 'utf8')).toMatch(/the pool no longer holds this run's lease/);
  });

  it("stops an earlier attempt on another slot of the host before a later attempt touches the run's files", async () => {
    const experimentId = 'exp-second-attempt';
    const files = runFiles(workDir, experimentId);
    const firstPid = await startThenLetGo(experimentId, 'l4');

    // The workflow gave attempt 1 up as lost and placed attempt 2 on the host's other slot.
    const other: Slot = { ...slot, slotId: 'solo/cpu1', index: 1, uuid: 'cpu1', taskQueue: 'expctl-slot-solo-cpu1' };
    const outcome = await new MockActivityEnvironment().run(activities(other).runTraining, {
      experimentId,
      request: request({ VAL_BPB: '1.25' }),
      slot: other,
      leaseId: 'l5',
      attempt: 2,
    });
    expect(processAlive(firstPid)).toBe(false);
    expect(outcome).toMatchObject({ exitCode: 0, metrics: { val_bpb: 1.25 }, canceled: false });
    const log = await fs.readFile(files.log, 'utf8');
    // Attempt 1's lines all come before attempt 2's start: nothing of it wrote after.
    const secondStart = log.lastIndexOf('attempt 2 on solo/cpu1');
    expect(secondStart).toBeGreaterThan(0);
    expect(log.slice(secondStart)).not.toMatch(/solo\/cpu0/);
  });
});

describe('the train activity on a host whose heartbeats the server acknowledges', () => {
  // The host's liveness epoch, confirmed as the server would accept its heartbeats (every 100 ms).
  const confirmations = new HostConfirmations(100);
  let confirming: NodeJS.Timeout;
  let poolAsked = 0;
  let taskHeartbeat: () => Promise<void> = async () => undefined;
  const acknowledged = () =>
    createTrainingActivities({
      slot,
      workDir,
      heartbeatIntervalMs: 200,
      killAfterMs: 1000,
      leaseHeld: async (_slotId, leaseId) => {
        poolAsked += 1;
        return !gone.has(leaseId);
      },
      leaseCheckIntervalMs: 200,
      hostRuns,
      hostConfirmations: confirmations,
      acknowledgedHeartbeat: () => taskHeartbeat(),
    });
  beforeAll(() => {
    const epoch = confirmations.begin();
    confirming = setInterval(() => confirmations.confirmed(epoch, Date.now()), 100);
  });
  afterAll(() => clearInterval(confirming));

  it('starts a run whose task the server still has open, and keeps it confirmed, without asking the pool', async () => {
    taskHeartbeat = async () => undefined;
    poolAsked = 0;
    const experimentId = 'exp-host-confirmed';
    const startedAt = Date.now();
    const outcome = await new MockActivityEnvironment().run(acknowledged().runTraining, {
      experimentId,
      request: request({ VAL_BPB: '1.0', STEPS: '15', STEP_SECONDS: '0.1' }),
      slot,
      leaseId: 'h1',
    });
    expect(outcome).toMatchObject({ exitCode: 0, canceled: false });
    // Trained for several lease-check periods (200 ms): each confirmation came from the host.
    expect(poolAsked).toBe(0);
    expect((await fs.stat(runFiles(workDir, experimentId).attached)).mtimeMs).toBeGreaterThan(startedAt);
  });

  it('never starts a run whose task the server says is over (timed out, canceled, its workflow closed)', async () => {
    for (const [experimentId, over] of [
      ['exp-task-gone', new ActivityNotFoundError('Not found')],
      ['exp-task-canceled', new ActivityCancelledError('cancelled')],
    ] as const) {
      taskHeartbeat = async () => {
        throw over;
      };
      await expect(
        new MockActivityEnvironment().run(acknowledged().runTraining, {
          experimentId,
          request: request({ VAL_BPB: '1.0' }),
          slot,
          leaseId: 'h2',
        }),
      ).rejects.toThrow(/the train task is over at the server .*; the training was not started/);
      await expect(fs.access(runFiles(workDir, experimentId).record)).rejects.toThrow();
    }
  });

  it('asks the pool when the server does not answer: a lease given away is not started', async () => {
    taskHeartbeat = async () => {
      throw new Error('deadline exceeded');
    };
    await expect(
      new MockActivityEnvironment().run(acknowledged().runTraining, {
        experimentId: 'exp-no-answer',
        request: request({ VAL_BPB: '1.0' }),
        slot,
        leaseId: 'gone',
      }),
    ).rejects.toThrow(/the lease gone on solo\/cpu0 is gone/);
  });

  it('a run its task let go asks the pool again, which stops it once its lease is gone, however the host confirms', async () => {
    taskHeartbeat = async () => undefined;
    const experimentId = 'exp-host-let-go';
    const trainingPid = await startThenLetGo(experimentId, 'h3', acknowledged());
    expect(processAlive(trainingPid)).toBe(true);
    gone.add('h3');
    await waitFor(async () => !processAlive(trainingPid), 30_000);
    expect(await fs.readFile(runFiles(workDir, experimentId).log, 'utf8')).toMatch(
      /the pool no longer holds this run's lease/,
    );
  });
});

/**
 * Starts a slow run on the first slot, then times its task out as the server would under load:
 * the task lets go and the run goes on. Returns the training process's pid.
 */
async function startThenLetGo(experimentId: string, leaseId: string, on = training): Promise<number> {
  const pidFile = path.join(workDir, `${experimentId}.pid`);
  const env = new MockActivityEnvironment();
  const running = env.run(on.runTraining, {
    experimentId,
    request: request({ MODE: 'slow', PID_FILE: pidFile }),
    slot,
    leaseId,
  });
  await waitFor(async () => fileExists(pidFile), 30_000);
  env.cancel('TIMED_OUT', new ActivityCancellationDetails({ timedOut: true }));
  await expect(running).rejects.toBeInstanceOf(CancelledFailure);
  return Number(await fs.readFile(pidFile, 'utf8'));
}
