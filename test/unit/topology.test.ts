import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { gpuPlacement, parseTopologyMatrix } from '../../src/domain/topology.js';
import { FIXTURES } from '../helpers/stack.js';

// Real `nvidia-smi topo -m` outputs (test/fixtures/topology/README.md says where each came from).
const real = (name: string) => fs.readFileSync(path.join(FIXTURES, 'topology', name), 'utf8');
const numa = (...nodes: (number | null)[]) => Object.fromEntries(nodes.map((node, gpu) => [gpu, node]));

describe('parseTopologyMatrix on real outputs', () => {
  it('a DGX H100 (NV18 through NVSwitch, 12 NICs, GPU NUMA ID): one island of 8 on two NUMA nodes', () => {
    expect(parseTopologyMatrix(real('dgx-h100-nv18.txt'))).toEqual({
      source: 'nvidia-smi topo -m',
      islands: [[0, 1, 2, 3, 4, 5, 6, 7]],
      numaNodes: numa(0, 0, 0, 0, 1, 1, 1, 1),
    });
  });

  it('a DGX A100 (NV12, mlx5 columns): one island of 8, NUMA nodes 3, 1, 7 and 5', () => {
    expect(parseTopologyMatrix(real('dgx-a100-nv12-mlx5.txt'))).toEqual({
      source: 'nvidia-smi topo -m',
      islands: [[0, 1, 2, 3, 4, 5, 6, 7]],
      numaNodes: numa(3, 3, 1, 1, 7, 7, 5, 5),
    });
  });

  it('8 PCIe A6000s bridged in pairs (space-aligned, indented): four islands of two', () => {
    expect(parseTopologyMatrix(real('eight-a6000-nv4-pairs.txt'))).toEqual({
      source: 'nvidia-smi topo -m',
      islands: [
        [0, 1],
        [2, 3],
        [4, 5],
        [6, 7],
      ],
      numaNodes: numa(0, 0, 0, 0, 1, 1, 1, 1),
    });
  });

  it('4 PCIe A100s with one NVLink pair and mlx5 columns: the pair, then two GPUs alone', () => {
    expect(parseTopologyMatrix(real('four-a100-pcie-one-nvlink-pair.txt'))).toEqual({
      source: 'nvidia-smi topo -m',
      islands: [[0, 1], [2], [3]],
      numaNodes: numa(0, 0, 1, 1),
    });
  });

  it('8 RTX 4090s without NVLink: every GPU its own island', () => {
    const topology = parseTopologyMatrix(real('eight-4090-no-nvlink.txt'));
    expect(topology.islands).toEqual([[0], [1], [2], [3], [4], [5], [6], [7]]);
    expect(topology.numaNodes).toEqual(numa(0, 0, 0, 0, 1, 1, 1, 1));
  });

  it('4 H100s on NV6 (space-aligned, NIC rows and legend): one island, a NUMA node per GPU', () => {
    expect(parseTopologyMatrix(real('four-h100-nv6.txt'))).toEqual({
      source: 'nvidia-smi topo -m',
      islands: [[0, 1, 2, 3]],
      numaNodes: numa(3, 1, 7, 5),
    });
  });

  it('NUMA Affinity N/A is an unknown node, not a number', () => {
    expect(parseTopologyMatrix(real('two-3090-numa-unknown.txt'))).toEqual({
      source: 'nvidia-smi topo -m',
      islands: [[0], [1]],
      numaNodes: numa(null, 1),
    });
  });

  it('a single H100 whose header carries ANSI underline codes', () => {
    expect(real('one-h100-ansi.txt')).toContain('\x1b[4m');
    expect(parseTopologyMatrix(real('one-h100-ansi.txt'))).toEqual({
      source: 'nvidia-smi topo -m',
      islands: [[0]],
      numaNodes: numa(0),
    });
  });

  it('a NIC cell run into its neighbour (as pasted in a real report) still reads the GPU cells and NUMA', () => {
    const damaged = real('dgx-h100-nv18.txt').replace('NODE\tNODE\tPXB\tNODE\t56', 'NODE\tNODEPXB\tNODE\t56');
    expect(damaged).not.toBe(real('dgx-h100-nv18.txt'));
    const topology = parseTopologyMatrix(damaged);
    expect(topology.islands).toEqual([[0, 1, 2, 3, 4, 5, 6, 7]]);
    expect(topology.numaNodes[6]).toBe(1);
  });

  it('a NUMA affinity spanning several nodes is unknown', () => {
    const text = [
      '\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity',
      'GPU0\t X \tNV12\t0-115\t0-3',
      'GPU1\tNV12\t X \t0-115\t0-3',
    ];
    expect(parseTopologyMatrix(text.join('\n')).numaNodes).toEqual(numa(null, null));
  });

  it('output without a NUMA Affinity column leaves every node unknown', () => {
    const text = [
      '\tGPU0\tGPU1\tmlx4_0\tCPU Affinity',
      'GPU0\t X \tPIX\tPHB\t0-9,20-29',
      'GPU1\tPIX\t X \tPHB\t0-9,20-29',
    ];
    expect(parseTopologyMatrix(text.join('\n'))).toEqual({
      source: 'nvidia-smi topo -m',
      islands: [[0], [1]],
      numaNodes: numa(null, null),
    });
  });
});

describe('parseTopologyMatrix on output it cannot read', () => {
  it.each([
    ['nothing', ''],
    ['the driver failure', "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."],
    ['a header without rows', '\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\n'],
    ['a row that does not mark itself', '\tGPU0\tGPU1\tCPU Affinity\nGPU0\tNV4\tNV4\t0-3\nGPU1\tNV4\t X \t0-3\n'],
    ['rows cut short', '\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\nGPU0\t X\nGPU1\tNV4\t X \t0-3\t0\n'],
  ])('%s: unavailable, with the reason', (_what, text) => {
    const topology = parseTopologyMatrix(text);
    expect(topology.source).toBe('unavailable');
    expect(topology.islands).toEqual([]);
    expect(topology.problem).toMatch(/nvidia-smi topo -m/);
  });
});

describe('gpuPlacement', () => {
  it("names a GPU's island by its place among the islands, and its NUMA node", () => {
    const topology = parseTopologyMatrix(real('eight-a6000-nv4-pairs.txt'));
    expect(gpuPlacement(topology, 5)).toEqual({ nvlinkIsland: 2, numaNode: 1 });
    expect(gpuPlacement(topology, 9)).toEqual({});
    expect(gpuPlacement(parseTopologyMatrix(''), 0)).toEqual({});
  });
});
