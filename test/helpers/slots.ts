import type { SlotView } from '../../src/domain/placement.js';

/**
 * One idle GPU of `host` as the pool's placement sees it: an H100 unless `extra` says otherwise
 * (class, memory, island, state, lease end). Pure tests of placement build their fleets from it.
 */
export function gpuSlot(host: string, index: number, extra: Partial<SlotView> = {}): SlotView {
  return {
    slotId: `${host}/gpu${index}`,
    host,
    index,
    uuid: `GPU-${host}-${index}`,
    name: 'NVIDIA H100 80GB HBM3',
    acceleratorClass: 'h100',
    memoryMb: 81559,
    taskQueue: `q-${host}-${index}`,
    runtimeTags: [],
    state: 'idle',
    draining: false,
    ...extra,
  };
}

/** The A100 40 GB a test fleet uses where the class or memory matters. */
export const A100_40GB: Partial<SlotView> = {
  name: 'NVIDIA A100-SXM4-40GB',
  acceleratorClass: 'a100',
  memoryMb: 40960,
};
