import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { GPU_IDLE_WARNING, type GpuTelemetry } from '../../src/domain/telemetry.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { EXPCTL, outputOf, runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

// GPU telemetry end to end: a host of four fake H100s whose nvidia-smi answers the telemetry query
// from files this test writes (the fleet CSV and FAKE_NVIDIA_SMI_TELEMETRY), sampled every 0.2 s;
// and a CPU host beside it. Runs go through the CLI as an agent starts them.

const SAMPLE_SECONDS = '0.2';
let stack: TestStack;
let source: { repo: string; commit: string };
let dir: string;
let fleet: string;
let values: string;
/** One line per telemetry query the fake nvidia-smi answered. */
let calls: string;
let env: Record<string, string>;

/** Every GPU of the host reports these values (index, util %, memory MiB, power W, temp C, SM clock MHz, throttle bitmask). */
const gpuValues = (util: number, memory: number, power: number, temperature: number, clock: number) =>
  [0, 1, 2, 3]
    .map((i) => `${i}, ${util}, ${memory}, ${power}, ${temperature}, ${clock}, 0x0000000000000004\n`)
    .join('');

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-telemetry-'));
  fleet = path.join(dir, 'four-h100.csv');
  values = path.join(dir, 'telemetry.csv');
  calls = path.join(dir, 'calls');
  await fs.copyFile(path.join(FIXTURES, 'fleets', 'four-h100.csv'), fleet);
  await fs.writeFile(values, gpuValues(87, 40000, 612.5, 71, 1980));
  process.env.EXPCTL_TELEMETRY_SECONDS = SAMPLE_SECONDS;
  process.env.FAKE_NVIDIA_SMI_TELEMETRY = values;
  process.env.FAKE_NVIDIA_SMI_CALLS = calls;
  stack = await startStack({ name: 'telemetry', host: 'gpuhost', fleet });
  await stack.addGpuWorker({ host: 'cpuhost', cpuSlots: 1 });
  source = await makeRepo();
  env = {
    TEMPORAL_ADDRESS: stack.address,
    TEMPORAL_NAMESPACE: stack.namespace,
    EXPCTL_CATALOG: stack.catalogPath,
    PATH: process.env.PATH!,
  };
});
afterAll(async () => {
  await stack?.stop();
  await fs.rm(dir, { recursive: true, force: true });
});

/** `expctl run --json` of the fixture script for about two seconds of training, from the agent's repository. */
async function run(tag: string, extra: string[] = []) {
  const printed = await runCli(
    env,
    [
      'run',
      '--tag',
      tag,
      '--hypothesis',
      'h',
      '--category',
      'other',
      '--time-budget',
      '60',
      '--env',
      'STEPS=20',
      '--env',
      'STEP_SECONDS=0.1',
      '--env',
      'VAL_BPB=1.0',
      ...extra,
      '--json',
      '--',
      'python3',
      'train.py',
    ],
    { cwd: source.repo },
  );
  const result = outputOf('run', printed);
  expect(result.status, String(printed.stderr)).toBe('completed');
  return result;
}

/** `expctl show ID` as a terminal gets it (text, not the JSON a pipe gets). */
const showText = (id: string) =>
  execa(process.execPath, ['--import', 'data:text/javascript,process.stdout.isTTY=true', EXPCTL, 'show', id], {
    env,
    reject: false,
  });

const callCount = async () => (await fs.readFile(calls, 'utf8').catch(() => '')).split('\n').length - 1;

const telemetryOf = async (id: string): Promise<GpuTelemetry> => (await stack.catalog.get(id))!.gpuTelemetry!;

describe('GPU telemetry of a run', () => {
  it('keeps a summary per GPU that matches what nvidia-smi reported, and show prints it', async () => {
    const result = await run('busy', ['--gpu-class', 'h100']);
    expect(result).not.toHaveProperty('warnings');
    const id = result.experiment_id as string;
    const record = (await stack.catalog.get(id))!;
    const telemetry = record.gpuTelemetry!;
    if (!telemetry.available) throw new Error(`telemetry unavailable: ${telemetry.reason}`);
    expect(telemetry.intervalSeconds).toBe(Number(SAMPLE_SECONDS));
    expect(telemetry.gpus).toHaveLength(1);
    const gpu = telemetry.gpus[0]!;
    expect(gpu.slotId).toBe(record.gpu);
    expect(gpu.uuid).toMatch(/^GPU-hhhhhhhh-0000-0000-0000-00000000000[0-3]$/);
    expect(gpu.samples).toBeGreaterThanOrEqual(2);
    expect(gpu).toMatchObject({
      utilizationMeanPercent: 87,
      utilizationMaxPercent: 87,
      memoryMaxMb: 40000,
      temperatureMaxC: 71,
      powerMeanW: 612.5,
      smClockMaxMhz: 1980,
      throttleReasons: ['sw_power_cap'],
    });
    // A constant 612.5 W from the first sample to the last.
    const hours = (Date.parse(telemetry.endedAt) - Date.parse(telemetry.startedAt)) / 3_600_000;
    expect(gpu.energyWh).toBeCloseTo(612.5 * hours, 3);
    const points = telemetry.series[0]!.points;
    expect(points.reduce((n, p) => n + p.samples, 0)).toBe(gpu.samples);
    expect(points.every((p) => p.utilizationPercent === 87 && p.memoryUsedMb === 40000)).toBe(true);
    expect(record.warnings).toEqual([]);

    const shown = await showText(id);
    expect(String(shown.stdout)).toContain(
      `${gpu.slotId}: ${gpu.samples} samples, util mean 87.0% max 87%, mem max 40000 MiB, temp max 71 C, power mean 612.5 W`,
    );
    const json = outputOf('show', await runCli(env, ['show', id, '--json']));
    expect(
      (json.record as { gpu_telemetry: { gpus: { memory_max_mb: number }[] } }).gpu_telemetry.gpus[0]!.memory_max_mb,
    ).toBe(40000);

    const page = path.join(dir, 'busy.html');
    const report = await runCli(env, ['report', 'html', '--tag', 'busy', '--out', page]);
    expect(report.exitCode, String(report.stderr)).toBe(0);
    const html = await fs.readFile(page, 'utf8');
    expect(html).toContain(`id="util-${id}"`);
    expect(html).toContain(`id="mem-${id}"`);
  });

  it('warns, in the record and in the JSON of run, of a GPU that stayed idle', async () => {
    await fs.writeFile(values, gpuValues(0, 300, 60, 35, 210));
    try {
      const result = await run('idle', ['--gpu-class', 'h100']);
      const warnings = result.warnings as string[];
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(
        new RegExp(
          `^${GPU_IDLE_WARNING}: the run's GPU stayed nearly idle \\(mean utilization GPU [0-3] 0\\.0% over \\d+ samples; under 5%\\)`,
        ),
      );
      const record = (await stack.catalog.get(result.experiment_id as string))!;
      expect(record.warnings).toEqual(warnings);
      const shown = await showText(result.experiment_id as string);
      expect(String(shown.stdout)).toContain(`warning:    ${warnings[0]}`);
    } finally {
      await fs.writeFile(values, gpuValues(87, 40000, 612.5, 71, 1980));
    }
  });

  it('says telemetry is unavailable for a run on a CPU slot, with no numbers and no warning', async () => {
    const result = await run('cpu', ['--gpu-class', 'cpu']);
    expect(result.worker).toBe('cpuhost');
    expect(result).not.toHaveProperty('warnings');
    expect(await telemetryOf(result.experiment_id as string)).toEqual({
      available: false,
      reason: 'cpuhost/cpu0 is a CPU slot: there is no GPU to sample',
    });
  });

  it('stops a run whose GPU disappears from nvidia-smi mid-run and names the GPU in its outcome', async () => {
    const pidFile = path.join(dir, 'slow.pid');
    const { handle } = await submitExperiment(stack.client, {
      tag: 'gpu-fails',
      hypothesis: 'h',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      timeBudgetSeconds: 120,
      env: { MODE: 'slow', VAL_BPB: '1.0', PID_FILE: pidFile },
      requirements: { acceleratorClass: 'h100' },
    });
    // Training, and sampled since (no other run trains now: every query is for this one), so its
    // GPU was listed before it goes.
    await waitFor(() => fileExists(pidFile), 120_000);
    const queried = await callCount();
    await waitFor(async () => (await callCount()) >= queried + 2, 60_000);
    const state = await handle.query(experimentStateQuery);
    const slotId = state.placement!.slotId;
    const index = Number(slotId.replace(/^gpuhost\/gpu/, ''));
    const original = await fs.readFile(fleet, 'utf8');
    const failedAt = Date.now();
    try {
      await fs.writeFile(
        fleet,
        original
          .split('\n')
          .filter((line) => !line.startsWith(`${index},`))
          .join('\n'),
      );
      await handle.result().catch(() => undefined);
    } finally {
      await fs.writeFile(fleet, original);
    }
    const ended = await handle.query(experimentStateQuery);
    const training = ended.training!;
    expect(training.gpuFailure).toMatchObject({
      slotId,
      index,
      uuid: `GPU-hhhhhhhh-0000-0000-0000-00000000000${index}`,
      evidence: `nvidia-smi no longer lists GPU ${index} (GPU-hhhhhhhh-0000-0000-0000-00000000000${index})`,
    });
    expect(Date.parse(training.gpuFailure!.at)).toBeGreaterThanOrEqual(failedAt - 1000);
    // Stopped, not run to its budget: well before 120 s, and its telemetry kept up to the failure.
    expect(Date.parse(training.endedAt) - Date.parse(training.startedAt)).toBeLessThan(60_000);
    expect(training.canceled).toBe(false);
    expect(training.gpuTelemetry?.available).toBe(true);
    expect(training.logTail).toContain(`expctl: GPU ${index} (${slotId}) failed while the run trained`);
  });
});
