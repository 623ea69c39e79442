import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ActivityCancellationDetails, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrainingActivities } from '../../src/activities/training.js';
import type { Slot } from '../../src/domain/fleet.js';
import { parseExperimentRequest } from '../../src/domain/request.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { processAlive } from '../../src/shared/processes.js';
import { makeRepo } from '../helpers/repo.js';
import { waitFor } from '../helpers/wait.js';

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
let held = true;
const activities = () =>
  createTrainingActivities({
    slot,
    workDir: workDir,
    heartbeatIntervalMs: 200,
    killAfterMs: 1000,
    leaseHeld: async () => held,
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
    held = false;
    const env = new MockActivityEnvironment();
    const experimentId = 'exp-lease-gone';
    await expect(
      env.run(training.runTraining, { experimentId, request: request({ VAL_BPB: '1.0' }), slot, leaseId: 'gone' }),
    ).rejects.toThrow(/the lease gone on solo\/cpu0 is gone/);
    await expect(fs.access(runFiles(workDir, experimentId).record)).rejects.toThrow();
    held = true;
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
    await waitFor(
      async () =>
        fs.access(files.record).then(
          () => true,
          () => false,
        ),
      30_000,
    );
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
    await waitFor(
      async () =>
        fs.access(pidFile).then(
          () => true,
          () => false,
        ),
      30_000,
    );
    const trainingPid = Number(await fs.readFile(pidFile, 'utf8'));
    env.cancel('CANCELLED', new ActivityCancellationDetails({ cancelRequested: true }));
    await expect(running).rejects.toBeInstanceOf(CancelledFailure);
    expect(processAlive(trainingPid)).toBe(false);
    await expect(fs.access(files.outcome)).rejects.toThrow();
  });
});
