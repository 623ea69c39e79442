import { describe, expect, it } from 'vitest';
import { placementLine } from '../../src/cli/commands/experiments.js';
import { DEFAULT_PLACEMENT_POLICY, planQueue, type SlotView } from '../../src/domain/placement.js';

/** An 8-GPU host of two 4-GPU NVLink islands, all free. */
const slots: SlotView[] = Array.from({ length: 8 }, (_, index) => ({
  slotId: `node-a/gpu${index}`,
  host: 'node-a',
  index,
  uuid: `GPU-${index}`,
  name: 'NVIDIA A100-SXM4-80GB',
  acceleratorClass: 'a100',
  memoryMb: 81920,
  taskQueue: `q-${index}`,
  runtimeTags: [],
  nvlinkIsland: index < 4 ? 0 : 1,
  numaNode: index < 4 ? 0 : 1,
  state: 'idle',
  draining: false,
}));

const recordFor = (gpus: number) =>
  planQueue(
    slots,
    [
      {
        experimentId: 'x',
        requirements: { acceleratorClass: 'a100', gpuMemoryMb: 0, runtimeTags: [], gpus },
        priority: 0,
        enqueuedAt: 0,
      },
    ],
    DEFAULT_PLACEMENT_POLICY,
    2500,
  ).grants[0]!.record;

describe("`expctl show`'s placement line", () => {
  it("names a multi-GPU run's every GPU and the islands they span", () => {
    const line = placementLine(recordFor(4));
    expect(line).toMatch(
      /^4 GPUs node-a\/gpu[0-7], node-a\/gpu[0-7], node-a\/gpu[0-7], node-a\/gpu[0-7] \(a100; island \d of node-a \(GPUs [0-7]-[0-7]\), NUMA \d\): .+; policy .+; waited 2\.5s$/,
    );
  });

  it('reads as before for a 1-GPU run: its slot and class', () => {
    const record = recordFor(1);
    expect(placementLine(record)).toBe(`${record.slotId} (a100): ${record.why}; policy ${record.policy}; waited 2.5s`);
  });
});
