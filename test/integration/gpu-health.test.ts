import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import {
  experimentStateQuery,
  gpuFailedSignal,
  poolPlanQuery,
  poolStateQuery,
  type SlotEntry,
} from '../../src/workflows/definitions.js';
import { healthCheckWorkflow } from '../../src/workflows/health.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { outputOf, runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { eventually, waitFor } from '../helpers/wait.js';

/**
 * Health with several GPUs: a bad GPU of a host drains that GPU only, and the host's other GPUs
 * keep being leased. The worker's fake nvidia-smi reads a fleet file the test rewrites.
 */
let stack: TestStack;
let fleetFile: string;
let healthyFleet: string;
let source: { repo: string; commit: string };

beforeAll(async () => {
  source = await makeRepo();
  stack = await startStack({ name: 'gpuhealth', gpuWorker: false });
  fleetFile = path.join(stack.workDir, 'quad.csv');
  healthyFleet = await fs.readFile(path.join(FIXTURES, 'fleets', 'four-h100.csv'), 'utf8');
  await fs.writeFile(fleetFile, healthyFleet);
  await stack.addGpuWorker({ host: 'quad', fleet: fleetFile });
});
afterAll(async () => stack?.stop());

const pool = () => stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
const slotEntry = async (slotId: string): Promise<SlotEntry | undefined> =>
  (await pool().query(poolStateQuery)).slots.find((entry) => entry.slot.slotId === slotId);
const healthCheck = () =>
  stack.client.workflow.execute(healthCheckWorkflow, {
    workflowId: `health-${Date.now()}`,
    taskQueue: CONTROL_TASK_QUEUE,
  });
/** A fleet file's text without GPU `index`'s row: nvidia-smi no longer lists that GPU. */
const withoutRow = (fleet: string, index: number) =>
  fleet
    .split('\n')
    .filter((line) => !line.startsWith(`${index},`))
    .join('\n');
const uuidOf = (index: number) => healthyFleet.split('\n')[index]!.split(', ')[1]!;

function request(tag: string): ExperimentRequestInput {
  return {
    hypothesis: 'h',
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 60,
    env: { VAL_BPB: '1.0', STEPS: '4', STEP_SECONDS: '0.2' },
    tag,
  };
}

describe('the scheduled health check on a 4-GPU host', () => {
  it('drains only the GPU nvidia-smi no longer lists; the other three keep being leased; a later healthy check lifts it', async () => {
    await fs.writeFile(fleetFile, withoutRow(healthyFleet, 1));
    const verdicts = await healthCheck();
    expect(verdicts.find((v) => v.host === 'quad')?.problems).toEqual([
      { slotId: 'quad/gpu1', reason: `nvidia-smi no longer lists GPU 1 (${uuidOf(1)})` },
    ]);
    expect(await slotEntry('quad/gpu1')).toMatchObject({
      draining: true,
      drainedBy: 'health',
      drainReason: `health: nvidia-smi no longer lists GPU 1 (${uuidOf(1)})`,
    });
    for (const other of ['quad/gpu0', 'quad/gpu2', 'quad/gpu3']) expect((await slotEntry(other))?.draining).toBe(false);

    // Four runs on a host with three GPUs in service: all complete, none on the drained GPU.
    const submitted = await Promise.all(
      Array.from({ length: 4 }, () => submitExperiment(stack.client, request('health'))),
    );
    const runs = await Promise.all(
      submitted.map(async ({ handle }) => ({
        result: await handle.result(),
        gpu: (await handle.query(experimentStateQuery)).gpu,
      })),
    );
    expect(runs.map((run) => run.result.status)).toEqual(['completed', 'completed', 'completed', 'completed']);
    expect(runs.map((run) => run.gpu)).not.toContain('quad/gpu1');
    expect(new Set(runs.map((run) => run.gpu)).size).toBeGreaterThan(1);

    await fs.writeFile(fleetFile, healthyFleet);
    expect((await healthCheck()).find((v) => v.host === 'quad')?.problems).toEqual([]);
    expect(await slotEntry('quad/gpu1')).toMatchObject({ draining: false, drainedBy: null, drainReason: null });
  });
});

describe('a GPU that failed under a run', () => {
  it('is drained alone, with the run and the evidence, and only a check measured after the failure lifts it', async () => {
    const failure = (at: Date) => ({
      slotId: 'quad/gpu2',
      index: 2,
      uuid: uuidOf(2),
      evidence: 'nvidia-smi no longer lists GPU 2',
      at: at.toISOString(),
    });
    // As if a check was under way when the GPU failed: the failure is newer than what it measured.
    await pool().signal(gpuFailedSignal, {
      experimentId: 'exp-failed-gpu',
      failure: failure(new Date(Date.now() + 3_600_000)),
    });
    await waitFor(async () => (await slotEntry('quad/gpu2'))?.draining === true, 20_000);
    expect(await slotEntry('quad/gpu2')).toMatchObject({
      drainedBy: 'health',
      drainReason: `health: GPU 2 (${uuidOf(2)}) failed under exp-failed-gpu: nvidia-smi no longer lists GPU 2`,
    });
    for (const other of ['quad/gpu0', 'quad/gpu1', 'quad/gpu3']) expect((await slotEntry(other))?.draining).toBe(false);
    await healthCheck();
    expect((await slotEntry('quad/gpu2'))?.draining).toBe(true);

    // A GPU named by a uuid the host did not register under that slot is not drained.
    await pool().signal(gpuFailedSignal, {
      experimentId: 'exp-other',
      failure: { ...failure(new Date()), slotId: 'quad/gpu3', index: 3 },
    });

    const earlier = failure(new Date(Date.now() - 60_000));
    await pool().signal(gpuFailedSignal, { experimentId: 'exp-failed-gpu', failure: earlier });
    await waitFor(async () => (await slotEntry('quad/gpu2'))?.healthSince === earlier.at, 20_000);
    expect((await healthCheck()).find((v) => v.host === 'quad')?.problems).toEqual([]);
    expect(await slotEntry('quad/gpu2')).toMatchObject({ draining: false, drainedBy: null });
    expect((await slotEntry('quad/gpu3'))?.draining).toBe(false);
  });
});

describe('a GPU that falls off the bus mid-run, on a 2-GPU host', () => {
  let pair: TestStack;
  let pairFleet: string;
  let healthyPair: string;
  let calls: string;
  beforeAll(async () => {
    pair = await startStack({ name: 'gpufail', gpuWorker: false });
    pairFleet = path.join(pair.workDir, 'pair.csv');
    healthyPair = await fs.readFile(path.join(FIXTURES, 'fleets', 'two-l4.csv'), 'utf8');
    await fs.writeFile(pairFleet, healthyPair);
    // The worker's GPU sampler asks the fake nvidia-smi twice a second while a run trains, each
    // query counted in a file.
    calls = path.join(pair.workDir, 'telemetry-calls');
    process.env.EXPCTL_TELEMETRY_SECONDS = '0.5';
    process.env.FAKE_NVIDIA_SMI_CALLS = calls;
    try {
      await pair.addGpuWorker({ host: 'pair', fleet: pairFleet });
    } finally {
      delete process.env.EXPCTL_TELEMETRY_SECONDS;
      delete process.env.FAKE_NVIDIA_SMI_CALLS;
    }
  });
  afterAll(async () => pair?.stop());

  const pairPool = () => pair.client.workflow.getHandle(POOL_WORKFLOW_ID);
  const telemetryQueries = async () =>
    (await fs.readFile(calls, 'utf8').catch(() => '')).split('\n').filter((line) => line !== '').length;
  /**
   * Until the sampler has read the run's GPUs at least once: its queries run one after another and
   * only while a run trains, so once two have started since `before`, the first has answered.
   */
  const sampled = (before: number) => waitFor(async () => (await telemetryQueries()) >= before + 2, 60_000);
  const pairSlot = async (slotId: string) =>
    (await pairPool().query(poolStateQuery)).slots.find((entry) => entry.slot.slotId === slotId);
  const onGpus = (gpus: number, env: Record<string, string>): ExperimentRequestInput => ({
    ...request('gpufail'),
    requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [], gpus },
    env: { VAL_BPB: '1.0', ...env },
  });

  it('ends a 2-GPU run gpu_failed naming that GPU; only it is drained, the other is leased again; a healthy check lifts the drain', async () => {
    const uuid1 = healthyPair.split('\n')[1]!.split(', ')[1]!;
    const before = await telemetryQueries();
    const { handle, experimentId } = await submitExperiment(
      pair.client,
      onGpus(2, { STEPS: '200', STEP_SECONDS: '0.5' }),
    );
    // Training, its GPUs read by the sampler, then GPU 1 falls off the bus.
    await sampled(before);
    const log = runFiles(path.join(pair.workDir, 'pair'), experimentId).log;
    expect((await pairPool().query(poolStateQuery)).slots.map((s) => s.lease?.experimentId)).toEqual([
      experimentId,
      experimentId,
    ]);
    await fs.writeFile(pairFleet, withoutRow(healthyPair, 1));

    const result = await handle.result();
    expect(result.status).toBe('gpu_failed');
    expect(result.reason).toMatch(
      new RegExp(`^GPU 1 \\(pair/gpu1, ${uuid1}\\) failed while the run trained: nvidia-smi no longer lists GPU 1`),
    );
    expect(result.decision).toBeNull();
    const state = await handle.query(experimentStateQuery);
    expect(state.training?.gpuFailure).toMatchObject({ slotId: 'pair/gpu1', index: 1, uuid: uuid1 });
    expect(state.attemptRecords?.at(-1)).toMatchObject({
      ended: 'gpu_failed',
      gpuFailure: { slotId: 'pair/gpu1', uuid: uuid1 },
    });
    // The record keeps the terminal state, the reason and the failure in the attempt that ended with it.
    await waitFor(async () => (await pair.catalog.get(experimentId))?.status === 'gpu_failed', 30_000);
    const record = (await pair.catalog.get(experimentId))!;
    expect(record.reason).toBe(result.reason);
    expect(record.attemptRecords?.at(-1)).toMatchObject({
      ended: 'gpu_failed',
      why: result.reason,
      gpuFailure: { slotId: 'pair/gpu1', index: 1, uuid: uuid1 },
    });
    // The run's processes were stopped by expctl, and its log says why.
    expect(await fs.readFile(log, 'utf8')).toMatch(/expctl: GPU 1 \(pair\/gpu1\) failed while the run trained/);

    expect(await pairSlot('pair/gpu1')).toMatchObject({
      draining: true,
      drainedBy: 'health',
      drainReason: expect.stringMatching(new RegExp(`^health: GPU 1 \\(${uuid1}\\) failed under ${experimentId}: `)),
      lease: null,
    });
    expect(await pairSlot('pair/gpu0')).toMatchObject({ draining: false, lease: null });

    // The next run gets the GPU left in service; a 2-GPU run waits for the drained one.
    const next = await submitExperiment(pair.client, onGpus(1, { STEPS: '2' }));
    expect((await next.handle.result()).status).toBe('completed');
    expect((await next.handle.query(experimentStateQuery)).gpu).toBe('pair/gpu0');
    const waiting = await submitExperiment(pair.client, onGpus(2, { STEPS: '2' }));
    await waitFor(async () => (await waiting.handle.query(experimentStateQuery)).status === 'queued', 30_000);
    const why = await eventually(async () =>
      (await pairPool().query(poolPlanQuery)).waiting.find((w) => w.experimentId === waiting.experimentId),
    );
    expect(why.why).toMatch(/pair has 1 usable GPU/);

    // The GPU is back: the next health check lifts the drain, and the waiting 2-GPU run starts.
    await fs.writeFile(pairFleet, healthyPair);
    await pair.client.workflow.execute(healthCheckWorkflow, {
      workflowId: `health-${Date.now()}`,
      taskQueue: CONTROL_TASK_QUEUE,
    });
    expect(await pairSlot('pair/gpu1')).toMatchObject({ draining: false, drainedBy: null });
    expect((await waiting.handle.result()).status).toBe('completed');
  });

  it('ends a run `expctl run` waits on with its JSON and exit 4, and `expctl show` records the GPU', async () => {
    const before = await telemetryQueries();
    const cli = runCli(
      { TEMPORAL_ADDRESS: pair.address, TEMPORAL_NAMESPACE: pair.namespace, EXPCTL_CATALOG: pair.catalogPath },
      [
        'run',
        '--tag',
        'gpufail',
        '--hypothesis',
        'an agent tries something',
        '--category',
        'hyperparams',
        '--time-budget',
        '120',
        '--env',
        'VAL_BPB=1.0',
        '--env',
        'STEPS=200',
        '--env',
        'STEP_SECONDS=0.5',
        '--json',
        '--',
        'python3',
        'train.py',
      ],
      { cwd: source.repo },
    );
    // The run's GPU, once the sampler has read it.
    const leased = await eventually(async () =>
      (await pairPool().query(poolStateQuery)).slots.find((entry) => entry.lease !== null),
    );
    const { experimentId } = leased.lease!;
    await sampled(before);
    const { index, uuid, slotId } = leased.slot;
    await fs.writeFile(pairFleet, withoutRow(healthyPair, index));

    const printed = await cli;
    expect(printed.exitCode).toBe(4);
    const result = JSON.parse(String(printed.stdout)) as Record<string, unknown>;
    expect(result).toMatchObject({
      experiment_id: experimentId,
      status: 'gpu_failed',
      decision: null,
      action: null,
      metric: null,
      consecutive_crashes: 0,
      should_abort: false,
      gpu: slotId,
      reason: expect.stringContaining(`GPU ${index} (${slotId}, ${uuid}) failed while the run trained`),
    });
    const shown = outputOf(
      'show',
      await runCli(
        { TEMPORAL_ADDRESS: pair.address, TEMPORAL_NAMESPACE: pair.namespace, EXPCTL_CATALOG: pair.catalogPath },
        ['show', experimentId, '--json'],
      ),
    );
    expect(JSON.stringify(shown)).toContain(`"gpu_failure":{"slot_id":"${slotId}","index":${index},"uuid":"${uuid}"`);

    await fs.writeFile(pairFleet, healthyPair);
  });
});
