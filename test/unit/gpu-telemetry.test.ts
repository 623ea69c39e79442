import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES } from '../helpers/stack.js';
import type { Slot } from '../../src/domain/fleet.js';
import { parseTelemetryQuery, type GpuFailure } from '../../src/domain/telemetry.js';
import { GpuTelemetrySampler, nvidiaSmiQuery, type TelemetryAnswer } from '../../src/gpu-worker/gpu-telemetry.js';
import { waitFor } from '../helpers/wait.js';

const slot = (index: number, acceleratorClass = 'h100'): Slot => ({
  slotId: `h/gpu${index}`,
  host: 'h',
  index,
  uuid: `GPU-${index}`,
  name: 'NVIDIA H100 80GB HBM3',
  acceleratorClass,
  memoryMb: 81559,
  taskQueue: `q${index}`,
  runtimeTags: [],
});
const line = (index: number, util: number, ecc = 0) =>
  `${index}, GPU-${index}, ${util}, 1000, 300, 50, 1980, 0x0000000000000000, ${ecc}`;

/** A query answering from a list the test changes, counting its calls. */
function scripted(rows: string[]) {
  const calls = { count: 0 };
  const query = async (): Promise<TelemetryAnswer> => {
    calls.count++;
    return { reading: parseTelemetryQuery(rows.join('\n')) };
  };
  return { calls, query };
}

describe('GpuTelemetrySampler', () => {
  it('asks once per tick for every GPU, only while a run is subscribed, and hands each run its own GPUs', async () => {
    const rows = [line(0, 90), line(1, 10)];
    const { calls, query } = scripted(rows);
    const sampler = new GpuTelemetrySampler({ intervalSeconds: 0.05, query });
    const a = sampler.subscribe('a', [slot(0)], () => {});
    const b = sampler.subscribe('b', [slot(1)], () => {});
    await waitFor(async () => calls.count >= 4, 10_000);
    const ta = a.finish();
    const tb = b.finish();
    expect(sampler.subscribed).toBe(0);
    // Nothing is due once no run is subscribed (a query under way ends without scheduling another).
    await waitFor(async () => !sampler.active, 10_000);
    if (!ta.available || !tb.available) throw new Error('expected telemetry');
    expect(ta.gpus.map((g) => [g.slotId, g.utilizationMeanPercent])).toEqual([['h/gpu0', 90]]);
    expect(tb.gpus.map((g) => [g.slotId, g.utilizationMeanPercent])).toEqual([['h/gpu1', 10]]);
    // One query per tick for both runs: each run saw at most one sample per call.
    expect(ta.gpus[0]!.samples).toBeLessThanOrEqual(calls.count);
    expect(ta.gpus[0]!.samples + tb.gpus[0]!.samples).toBeGreaterThan(calls.count);
  });

  it("calls back once when a run's GPU disappears, and not for another run's", async () => {
    const rows = [line(0, 90), line(1, 90)];
    const { calls, query } = scripted(rows);
    const sampler = new GpuTelemetrySampler({ intervalSeconds: 0.05, query });
    const failures: GpuFailure[] = [];
    const others: GpuFailure[] = [];
    const run = sampler.subscribe('a', [slot(1)], (f) => failures.push(f));
    const other = sampler.subscribe('b', [slot(0)], (f) => others.push(f));
    await waitFor(async () => calls.count >= 2, 10_000);
    rows.splice(1, 1);
    await waitFor(async () => failures.length > 0, 10_000);
    const seen = calls.count;
    await waitFor(async () => calls.count >= seen + 2, 10_000);
    expect(failures).toEqual([
      expect.objectContaining({ slotId: 'h/gpu1', evidence: 'nvidia-smi no longer lists GPU 1 (GPU-1)' }),
    ]);
    expect(others).toEqual([]);
    run.finish();
    other.finish();
  });

  it('says telemetry is unavailable for a CPU slot and on a host without nvidia-smi, with no numbers', async () => {
    const { calls, query } = scripted([line(0, 1)]);
    const sampler = new GpuTelemetrySampler({ intervalSeconds: 0.05, query });
    expect(sampler.subscribe('cpu', [slot(0, 'cpu')], () => {}).finish()).toEqual({
      available: false,
      reason: 'h/gpu0 is a CPU slot: there is no GPU to sample',
    });
    expect(calls.count).toBe(0);
    const asked = { count: 0 };
    const real = nvidiaSmiQuery({ PATH: '/nonexistent' });
    const missing = new GpuTelemetrySampler({
      intervalSeconds: 0.05,
      query: () => real().finally(() => asked.count++),
    });
    const handle = missing.subscribe('x', [slot(0)], () => {});
    await waitFor(async () => asked.count > 0 && !missing.active, 10_000);
    expect(handle.finish()).toEqual({ available: false, reason: "no nvidia-smi on this host's PATH" });
    expect(missing.subscribe('y', [slot(0)], () => {}).finish()).toEqual({
      available: false,
      reason: "no nvidia-smi on this host's PATH",
    });
    expect(asked.count).toBe(1);
  });

  it('names the last failure when every query failed', async () => {
    const asked = { count: 0 };
    const sampler = new GpuTelemetrySampler({
      intervalSeconds: 0.05,
      query: async () => {
        asked.count++;
        return {
          error: "nvidia-smi failed (9): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        };
      },
    });
    const handle = sampler.subscribe('a', [slot(0)], () => {});
    await waitFor(async () => asked.count >= 2, 10_000);
    expect(handle.finish()).toEqual({
      available: false,
      reason: expect.stringMatching(
        /^every telemetry query failed; the last: nvidia-smi failed \(9\): NVIDIA-SMI has failed/,
      ),
    });
  });
});

describe('the fake nvidia-smi answers the telemetry query as the real one', () => {
  const fakeEnv = async (telemetry?: string) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fake-smi-'));
    const values = path.join(dir, 'telemetry.csv');
    if (telemetry !== undefined) await fs.writeFile(values, telemetry);
    return {
      PATH: `${path.join(FIXTURES, 'bin')}${path.delimiter}${process.env.PATH}`,
      FAKE_NVIDIA_SMI_FLEET: path.join(FIXTURES, 'fleets', 'four-h100.csv'),
      ...(telemetry !== undefined ? { FAKE_NVIDIA_SMI_TELEMETRY: values } : {}),
    };
  };

  it('every GPU of the fleet, with the values the telemetry file gives and [N/A] for what the fleet lacks', async () => {
    const answer = await nvidiaSmiQuery(await fakeEnv('2, 87, 40000, 612.5, 71, 1980, 0x0000000000000044\n'))();
    if (!('reading' in answer)) throw new Error(JSON.stringify(answer));
    expect(answer.reading.lostReports).toEqual([]);
    expect(answer.reading.rows.map((r) => r.index)).toEqual([0, 1, 2, 3]);
    expect(answer.reading.rows[2]).toEqual({
      index: 2,
      uuid: 'GPU-hhhhhhhh-0000-0000-0000-000000000002',
      utilizationPercent: 87,
      memoryUsedMb: 40000,
      powerW: 612.5,
      temperatureC: 71,
      smClockMhz: 1980,
      throttleReasons: ['sw_power_cap', 'hw_thermal_slowdown'],
      eccUncorrected: 0,
      lost: null,
    });
    expect(answer.reading.rows[0]).toMatchObject({ utilizationPercent: 0, temperatureC: 31, powerW: null });
  });

  it('a GPU said lost: the message, the other GPUs, exit 15 — still a reading', async () => {
    const answer = await nvidiaSmiQuery(await fakeEnv('1, lost\n'))();
    if (!('reading' in answer)) throw new Error(JSON.stringify(answer));
    expect(answer.reading.rows.map((r) => r.index)).toEqual([0, 2, 3]);
    expect(answer.reading.lostReports).toEqual([
      'Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost.  Reboot the system to recover this GPU',
    ]);
  });

  it('no driver: an error that says so', async () => {
    const env = { ...(await fakeEnv()), FAKE_NVIDIA_SMI_FLEET: '/nonexistent/fleet.csv' };
    expect(await nvidiaSmiQuery(env)()).toEqual({
      error: "nvidia-smi failed (9): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    });
  });
});

describe('a driver that knows the throttle field only by its new name', () => {
  it('is asked by the new name from then on, and its bitmask read the same', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'renamed-smi-'));
    const calls = path.join(dir, 'calls');
    // Answers like a driver without the old name: refuses it, answers the query with the new one.
    await fs.writeFile(
      path.join(dir, 'nvidia-smi'),
      [
        '#!/usr/bin/env bash',
        `echo "$1" >> ${JSON.stringify(calls)}`,
        'case "$1" in',
        '  *clocks_throttle_reasons*) echo \'Field "clocks_throttle_reasons.active" is not a valid field to query.\'; exit 2 ;;',
        '  *clocks_event_reasons.active*) echo "0, GPU-0, 50, 100, 70.5, 40, 1410, 0x0000000000000020, 0" ;;',
        '  *) exit 2 ;;',
        'esac',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const query = nvidiaSmiQuery({ PATH: `${dir}${path.delimiter}${process.env.PATH}` });
    for (let i = 0; i < 2; i++) {
      const answer = await query();
      if (!('reading' in answer)) throw new Error(JSON.stringify(answer));
      expect(answer.reading.rows[0]).toMatchObject({
        utilizationPercent: 50,
        throttleReasons: ['sw_thermal_slowdown'],
      });
    }
    const asked = (await fs.readFile(calls, 'utf8')).trim().split('\n');
    expect(asked.map((a) => a.includes('clocks_event_reasons.active'))).toEqual([false, true, true]);
  });
});
