import fs from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parseGpuQuery } from '../../src/domain/fleet.js';
import {
  assessHealth,
  gpuFailureDrainReason,
  matchGpuRows,
  readHealthQuery,
  reportLiftsDrain,
  type ExpectedGpu,
  type HostHealthReport,
} from '../../src/domain/health.js';
import { DEFAULT_PLACEMENT_POLICY, planQueue, type LeaseRequest, type SlotView } from '../../src/domain/placement.js';
import { gpuSlot } from '../helpers/slots.js';

const FOUR_H100 = new URL('../fixtures/fleets/four-h100.csv', import.meta.url);

/** The four GPUs of the fixture host as it registered them. */
async function registered(): Promise<{ rows: string[]; expected: ExpectedGpu[] }> {
  const text = await fs.readFile(FOUR_H100, 'utf8');
  const expected = parseGpuQuery(text).map((row) => ({
    slotId: `h/gpu${row.index}`,
    index: row.index,
    uuid: row.uuid,
  }));
  return { rows: text.split('\n').filter((line) => line.trim() !== ''), expected };
}

function reportOf(expected: ExpectedGpu[], csv: string): HostHealthReport {
  return {
    host: 'h',
    checkedAt: '2026-12-07T08:00:00.000Z',
    gpus: matchGpuRows(expected, parseGpuQuery(csv)),
    expectedGpus: expected,
    slotIds: expected.map((gpu) => gpu.slotId),
    diskFreeMb: null,
    error: null,
  };
}

/** The report of a host whose health query answered `reading`. */
function reportFrom(expected: ExpectedGpu[], reading: ReturnType<typeof readHealthQuery>): HostHealthReport {
  return {
    ...reportOf(expected, ''),
    gpus: matchGpuRows(expected, reading.rows),
    lostGpus: reading.lostGpus,
    nvidiaSmiSaid: reading.said,
  };
}

describe('the health check of a host with several GPUs', () => {
  it('finds nothing wrong with a host whose GPUs all answer', async () => {
    const { rows, expected } = await registered();
    expect(assessHealth(reportOf(expected, rows.join('\n')))).toEqual([]);
  });

  it('names the GPU nvidia-smi no longer lists, and only it, though the driver numbered the others anew', async () => {
    const { rows, expected } = await registered();
    // GPU 1 fell off the bus: the driver lists the remaining three as 0, 1 and 2.
    const renumbered = [rows[0]!, rows[2]!.replace(/^2,/, '1,'), rows[3]!.replace(/^3,/, '2,')].join('\n');
    const report = reportOf(expected, renumbered);
    expect(report.gpus.map((gpu) => gpu.slotId)).toEqual(['h/gpu0', 'h/gpu2', 'h/gpu3']);
    expect(assessHealth(report)).toEqual([
      { slotId: 'h/gpu1', reason: `nvidia-smi no longer lists GPU 1 (${expected[1]!.uuid})` },
    ]);
  });

  it('drains only the GPU with uncorrected ECC errors', async () => {
    const { rows, expected } = await registered();
    const csv = rows.map((row, i) => (i === 3 ? row.replace(/, \d+$/, ', 2') : row)).join('\n');
    expect(assessHealth(reportOf(expected, csv))).toEqual([{ slotId: 'h/gpu3', reason: '2 uncorrected ECC errors' }]);
  });

  it('reads an answer in which nvidia-smi says a GPU is lost, and drains only that GPU', async () => {
    const { rows, expected } = await registered();
    // As nvidia-smi prints it (exit 15): a line about the lost GPU, and its row with lost cells.
    const answer = [
      rows[0],
      'Unable to determine the device handle for GPU 0000:3B:00.0: GPU is lost.  Reboot the system to recover this GPU',
      `3, ${expected[3]!.uuid}, [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost], [GPU is lost]`,
      rows[1],
      rows[2],
    ].join('\n');
    const reading = readHealthQuery(answer);
    expect(reading.rows.map((row) => row.index)).toEqual([0, 1, 2]);
    expect(reading.lostGpus).toEqual([{ uuid: expected[3]!.uuid, said: 'GPU is lost' }]);
    expect(assessHealth(reportFrom(expected, reading))).toEqual([
      { slotId: 'h/gpu3', reason: `nvidia-smi reports GPU 3 (${expected[3]!.uuid}) lost: GPU is lost` },
    ]);
    // Without a row for it, the lost GPU is the one missing, and the reason quotes what nvidia-smi said.
    const bare = readHealthQuery([rows[0], rows[1], rows[2], answer.split('\n')[1]].join('\n'));
    expect(assessHealth(reportFrom(expected, bare))).toEqual([
      {
        slotId: 'h/gpu3',
        reason: expect.stringMatching(
          /^nvidia-smi no longer lists GPU 3 \(GPU-h+-0000-0000-0000-000000000003\) \(nvidia-smi: Unable to determine the device handle for GPU 0000:3B:00\.0: GPU is lost\./,
        ),
      },
    ]);
  });

  it('refuses an answer with a line that is neither a GPU row nor about a lost GPU', () => {
    expect(() => readHealthQuery('0, GPU-x, NVIDIA H100\nsomething else')).toThrow(/not a GPU row|fields/);
  });

  it('takes every slot out when nvidia-smi itself fails (no GPU can be told apart)', async () => {
    const { expected } = await registered();
    const report = {
      ...reportOf(expected, ''),
      error: "nvidia-smi failed: couldn't communicate with the NVIDIA driver",
    };
    expect(assessHealth(report).map((p) => p.slotId)).toEqual(['h/gpu0', 'h/gpu1', 'h/gpu2', 'h/gpu3']);
  });

  it('reads a report of an older worker (no registered GPUs in it) as before', async () => {
    const { rows, expected } = await registered();
    const { expectedGpus: _, ...older } = reportOf(expected, rows.slice(0, 2).join('\n'));
    expect(assessHealth(older)).toEqual([]);
  });
});

describe('the drain of a GPU that failed under a run', () => {
  const failure = {
    slotId: 'h/gpu1',
    index: 1,
    uuid: 'GPU-2b1c',
    evidence: 'nvidia-smi no longer lists GPU 1',
    at: '2026-12-07T08:00:10.000Z',
  };

  it('is a health drain whose reason names the GPU, the run and the evidence', () => {
    expect(gpuFailureDrainReason(failure, 'exp-1')).toBe(
      'health: GPU 1 (GPU-2b1c) failed under exp-1: nvidia-smi no longer lists GPU 1',
    );
  });

  it('is lifted only by a health report measured after the failure', () => {
    expect(reportLiftsDrain('2026-12-07T08:00:05.000Z', failure.at)).toBe(false);
    expect(reportLiftsDrain(failure.at, failure.at)).toBe(false);
    expect(reportLiftsDrain('2026-12-07T08:01:00.000Z', failure.at)).toBe(true);
    // A drain of the scheduled check itself: the next report that finds the GPU fine lifts it.
    expect(reportLiftsDrain('2026-12-07T08:01:00.000Z', undefined)).toBe(true);
  });
});

describe('placement around a drained GPU of a multi-GPU host', () => {
  const gpu = gpuSlot;
  /** A 4-GPU host whose GPU 1 a health check drained. */
  const quad = (host: string) => [0, 1, 2, 3].map((i) => gpu(host, i, i === 1 ? { draining: true } : {}));
  const ask = (experimentId: string, gpus: number | 'all'): LeaseRequest => ({
    experimentId,
    requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [], gpus },
    priority: 0,
    enqueuedAt: 0,
  });

  it("gives the host's other GPUs to smaller gangs and single runs", () => {
    const plan = planQueue(quad('a'), [ask('three', 3)], DEFAULT_PLACEMENT_POLICY, 0);
    expect(plan.grants.map((g) => g.slotIds)).toEqual([['a/gpu0', 'a/gpu2', 'a/gpu3']]);
  });

  it('lets a gang that no longer fits wait, or go to a host with all its GPUs in service', () => {
    const alone = planQueue(quad('a'), [ask('four', 4)], DEFAULT_PLACEMENT_POLICY, 0);
    expect(alone.grants).toEqual([]);
    expect(alone.waiting).toEqual([{ experimentId: 'four', why: expect.stringMatching(/a has 3 usable GPUs/) }]);
    const two = planQueue(
      [...quad('a'), ...[0, 1, 2, 3].map((i) => gpu('b', i))],
      [ask('four', 4)],
      DEFAULT_PLACEMENT_POLICY,
      0,
    );
    expect(two.grants.map((g) => g.slotIds)).toEqual([['b/gpu0', 'b/gpu1', 'b/gpu2', 'b/gpu3']]);
  });

  it('gives --gpus all the GPUs of the host in service: the drained one is left out', () => {
    const plan = planQueue(quad('a'), [ask('all', 'all')], DEFAULT_PLACEMENT_POLICY, 0);
    expect(plan.grants.map((g) => g.slotIds)).toEqual([['a/gpu0', 'a/gpu2', 'a/gpu3']]);
  });
});
