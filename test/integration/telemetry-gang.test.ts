import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ActivityCancellationDetails, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrainingActivities } from '../../src/activities/training.js';
import type { TrainingOutcome } from '../../src/domain/experiment.js';
import type { Slot } from '../../src/domain/fleet.js';
import { parseExperimentRequest } from '../../src/domain/request.js';
import { telemetryWarnings } from '../../src/domain/telemetry.js';
import { GpuTelemetrySampler, nvidiaSmiQuery } from '../../src/gpu-worker/gpu-telemetry.js';
import { processAlive } from '../../src/shared/processes.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

// The train activity of a 2-GPU lease (GPUs 1 and 2 of a fake four-H100 host) on real processes,
// with the host's sampler asking the fake nvidia-smi every 0.2 s: each GPU of the lease gets its
// own summary, and one of them failing stops the whole run.

const uuid = (index: number) => `GPU-hhhhhhhh-0000-0000-0000-00000000000${index}`;
const gpu = (index: number): Slot => ({
  slotId: `gang/gpu${index}`,
  host: 'gang',
  index,
  uuid: uuid(index),
  name: 'NVIDIA H100 80GB HBM3',
  acceleratorClass: 'h100',
  memoryMb: 81559,
  taskQueue: `expctl-slot-gang-gpu${index}`,
  runtimeTags: [],
});
const lease = [gpu(1), gpu(2)];
let dir: string;
let values: string;
let calls: string;
let source: { repo: string; commit: string };
let training: ReturnType<typeof createTrainingActivities>;
/** The fake nvidia-smi's environment: the host's GPUs as this test sets them. */
let smiEnv: NodeJS.ProcessEnv;

const request = (env: Record<string, string>) =>
  parseExperimentRequest({
    tag: 'gang-telemetry',
    hypothesis: 'h',
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    env,
    requirements: { acceleratorClass: 'h100', gpus: 2 },
  });
const callCount = async () => (await fs.readFile(calls, 'utf8').catch(() => '')).split('\n').length - 1;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-gang-telemetry-'));
  values = path.join(dir, 'telemetry.csv');
  calls = path.join(dir, 'calls');
  const fleet = path.join(dir, 'four-h100.csv');
  await fs.copyFile(path.join(FIXTURES, 'fleets', 'four-h100.csv'), fleet);
  // GPU 1 works; GPU 2 idles: a script that put its work on one GPU of two.
  await fs.writeFile(values, '1, 93, 61000, 650, 74, 1980, 0x0\n2, 1, 500, 70, 38, 345, 0x1\n');
  smiEnv = {
    ...process.env,
    PATH: `${path.join(FIXTURES, 'bin')}${path.delimiter}${process.env.PATH}`,
    FAKE_NVIDIA_SMI_FLEET: fleet,
    FAKE_NVIDIA_SMI_TELEMETRY: values,
    FAKE_NVIDIA_SMI_CALLS: calls,
  };
  const sampler = new GpuTelemetrySampler({ intervalSeconds: 0.2, query: nvidiaSmiQuery(smiEnv) });
  source = await makeRepo();
  training = createTrainingActivities({
    slot: lease[0]!,
    workDir: path.join(dir, 'work'),
    heartbeatIntervalMs: 200,
    killAfterMs: 1000,
    telemetry: sampler,
  });
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('telemetry of a 2-GPU run', () => {
  it('summarizes each GPU of the lease, in its order, and warns of the one that idled', async () => {
    const outcome: TrainingOutcome = await new MockActivityEnvironment().run(training.runTraining, {
      experimentId: 'exp-gang-busy',
      request: request({ VAL_BPB: '1.0', STEPS: '20', STEP_SECONDS: '0.1' }),
      slot: lease[0]!,
      slots: lease,
      leaseId: 'lease-busy',
    });
    expect(outcome.exitCode).toBe(0);
    const telemetry = outcome.gpuTelemetry!;
    if (!telemetry.available) throw new Error(`telemetry unavailable: ${telemetry.reason}`);
    expect(telemetry.gpus.map((g) => [g.slotId, g.uuid])).toEqual([
      ['gang/gpu1', uuid(1)],
      ['gang/gpu2', uuid(2)],
    ]);
    expect(telemetry.gpus[0]).toMatchObject({ utilizationMeanPercent: 93, memoryMaxMb: 61000, powerMeanW: 650 });
    expect(telemetry.gpus[1]).toMatchObject({
      utilizationMeanPercent: 1,
      memoryMaxMb: 500,
      throttleReasons: ['gpu_idle'],
    });
    expect(telemetry.series.map((s) => s.index)).toEqual([1, 2]);
    expect(telemetryWarnings(telemetry)).toEqual([
      expect.stringMatching(/^gpu_idle: 1 of the run's 2 GPUs stayed nearly idle \(mean utilization GPU 2 1\.0% over/),
    ]);
  });

  it('stops every process of the run when one of its GPUs is said lost, and names that GPU', async () => {
    const pidFile = path.join(dir, 'slow.pid');
    const running: Promise<TrainingOutcome> = new MockActivityEnvironment().run(training.runTraining, {
      experimentId: 'exp-gang-lost',
      request: request({ VAL_BPB: '1.0', MODE: 'slow', PID_FILE: pidFile }),
      slot: lease[0]!,
      slots: lease,
      leaseId: 'lease-lost',
    });
    await waitFor(() => fileExists(pidFile), 60_000);
    // Sampled since the run started (no other run is subscribed: every query is this run's).
    const queried = await callCount();
    await waitFor(async () => (await callCount()) >= queried + 2, 30_000);
    const pid = Number(await fs.readFile(pidFile, 'utf8'));
    await fs.writeFile(values, '1, 93, 61000, 650, 74, 1980, 0x0\n2, lost\n');
    const outcome = await running;
    expect(outcome.gpuFailure).toMatchObject({
      slotId: 'gang/gpu2',
      index: 2,
      uuid: uuid(2),
      evidence: expect.stringMatching(
        /^nvidia-smi no longer lists GPU 2 \(GPU-h+-0+-0+-0+-0+2\) \(nvidia-smi: Unable to determine the device handle for GPU 0000:03:00\.0: GPU is lost/,
      ),
    });
    expect(outcome.canceled).toBe(false);
    expect(outcome.timedOut).toBe(false);
    expect(processAlive(pid)).toBe(false);
    expect(outcome.logTail).toContain('expctl: GPU 2 (gang/gpu2) failed while the run trained');
  });

  it('a run re-attached by a restarted worker is sampled on every GPU its record names', async () => {
    await fs.writeFile(values, '1, 93, 61000, 650, 74, 1980, 0x0\n2, 93, 61000, 650, 74, 1980, 0x0\n');
    const experimentId = 'exp-gang-adopted';
    const pidFile = path.join(dir, 'adopted.pid');
    const workDir = path.join(dir, 'work-adopt');
    // The first worker process: it samples nothing (its nvidia-smi answers no query) and lets go.
    const first = createTrainingActivities({
      slot: lease[0]!,
      workDir,
      heartbeatIntervalMs: 200,
      killAfterMs: 1000,
      telemetry: new GpuTelemetrySampler({ intervalSeconds: 0.2, query: async () => ({ error: 'not this one' }) }),
    });
    const env = new MockActivityEnvironment();
    const running = env.run(first.runTraining, {
      experimentId,
      request: request({ VAL_BPB: '1.0', MODE: 'slow', PID_FILE: pidFile }),
      slot: lease[0]!,
      slots: lease,
      leaseId: 'lease-adopt',
    });
    await waitFor(() => fileExists(pidFile), 60_000);
    env.cancel('NOT_FOUND', new ActivityCancellationDetails({ notFound: true }));
    await expect(running).rejects.toBeInstanceOf(CancelledFailure);
    // A restarted worker re-attaches through the lead slot; it knows the host's other slots.
    const restarted = createTrainingActivities({
      slot: lease[0]!,
      workDir,
      heartbeatIntervalMs: 200,
      killAfterMs: 1000,
      telemetry: new GpuTelemetrySampler({ intervalSeconds: 0.2, query: nvidiaSmiQuery(smiEnv) }),
      hostSlots: [gpu(0), ...lease, gpu(3)],
    });
    const adopted: Promise<TrainingOutcome> = new MockActivityEnvironment().run(restarted.awaitTraining, {
      experimentId,
      slot: lease[0]!,
      leaseId: 'lease-adopt',
    });
    const queried = await callCount();
    await waitFor(async () => (await callCount()) >= queried + 2, 30_000);
    await fs.writeFile(values, '1, 93, 61000, 650, 74, 1980, 0x0\n2, lost\n');
    const outcome = await adopted;
    expect(outcome.gpuFailure).toMatchObject({ slotId: 'gang/gpu2', index: 2 });
    if (!outcome.gpuTelemetry?.available) throw new Error('expected telemetry');
    expect(outcome.gpuTelemetry.gpus.map((g) => g.slotId)).toEqual(['gang/gpu1', 'gang/gpu2']);
  });
});
