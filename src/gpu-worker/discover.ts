import os from 'node:os';
import { execa } from 'execa';
import {
  acceleratorClassFromName,
  GPU_QUERY_FIELDS,
  parseGpuQuery,
  type GpuQueryRow,
  type Slot,
} from '../domain/fleet.js';
import { slotTaskQueue } from '../shared/constants.js';
import {
  gpuPlacement,
  parseTopologyMatrix,
  TOPOLOGY_COMMAND,
  unavailableTopology,
  type HostTopology,
} from '../domain/topology.js';

export interface DiscoveryOptions {
  host: string;
  /** Restrict to these GPU indexes (`--gpus 0,2`). */
  gpus?: number[];
  /** Offer this many CPU slots instead of GPUs (default: GPUs, or defaultCpuSlots() where there are none). */
  cpuSlots?: number;
  runtimeTags?: string[];
}

export interface Discovery {
  slots: Slot[];
  driverVersion?: string;
  gpus: GpuQueryRow[];
  /** The GPU host's NVLink islands and NUMA nodes (absent on a host without GPUs). */
  topology?: HostTopology;
}

/** Queries `nvidia-smi`; returns undefined when there is none (a CPU-only host). */
export async function queryGpus(): Promise<GpuQueryRow[] | undefined> {
  try {
    const { stdout } = await execa(
      'nvidia-smi',
      [`--query-gpu=${GPU_QUERY_FIELDS.join(',')}`, '--format=csv,noheader,nounits'],
      { timeout: 20_000 },
    );
    return parseGpuQuery(stdout);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`nvidia-smi failed: ${(error as Error).message}`);
  }
}

/**
 * Reads the host's GPU topology once, at the worker's start. A host where `nvidia-smi topo -m`
 * fails or prints something unreadable still offers its GPUs: each is its own island, NUMA unknown.
 */
export async function queryTopology(): Promise<HostTopology> {
  try {
    const { stdout } = await execa('nvidia-smi', ['topo', '-m'], { timeout: 20_000 });
    return parseTopologyMatrix(stdout);
  } catch (error) {
    const { stderr, shortMessage, message } = error as { stderr?: string; shortMessage?: string; message: string };
    const why = (stderr?.trim() || shortMessage || message).split('\n')[0];
    return unavailableTopology(`${TOPOLOGY_COMMAND} failed: ${why}`);
  }
}

/**
 * CPU slots a host without GPUs offers by default: half its cores, but at least two, so a batch of
 * two variants runs both at once even on a 2-core machine (training shares the cores then; one
 * slot per two cores keeps the rest of the stack responsive on bigger hosts).
 */
export function defaultCpuSlots(cores: number = os.availableParallelism()): number {
  return Math.max(MIN_DEFAULT_CPU_SLOTS, Math.floor(cores / 2));
}
export const MIN_DEFAULT_CPU_SLOTS = 2;

/** Finds this host's schedulable slots: its GPUs, or CPU slots where there are none. */
export async function discoverSlots(options: DiscoveryOptions): Promise<Discovery> {
  const gpus = options.cpuSlots === undefined ? await queryGpus() : undefined;
  const extraTags = options.runtimeTags ?? [];
  if (gpus && gpus.length > 0) {
    const chosen = options.gpus ? gpus.filter((gpu) => options.gpus!.includes(gpu.index)) : gpus;
    const missing = (options.gpus ?? []).filter((index) => !gpus.some((gpu) => gpu.index === index));
    if (missing.length > 0)
      throw new Error(
        `--gpus names GPU ${missing.join(', ')}, but nvidia-smi lists only ${gpus.map((g) => g.index).join(', ')}`,
      );
    const driverVersion = chosen[0]?.driverVersion;
    const topology = await queryTopology();
    return {
      gpus: chosen,
      driverVersion,
      topology,
      slots: chosen.map((gpu) => {
        const slotId = `${options.host}/gpu${gpu.index}`;
        return {
          slotId,
          host: options.host,
          index: gpu.index,
          uuid: gpu.uuid,
          name: gpu.name,
          acceleratorClass: acceleratorClassFromName(gpu.name),
          memoryMb: gpu.memoryTotalMb,
          taskQueue: slotTaskQueue(options.host, `gpu${gpu.index}`),
          runtimeTags: [...extraTags, ...(gpu.driverVersion ? [`driver-${gpu.driverVersion}`] : [])],
          ...gpuPlacement(topology, gpu.index),
        };
      }),
    };
  }
  const count = options.cpuSlots ?? defaultCpuSlots();
  const memoryMb = Math.floor(os.totalmem() / 1024 / 1024 / count);
  return {
    gpus: [],
    slots: Array.from({ length: count }, (_, index) => ({
      slotId: `${options.host}/cpu${index}`,
      host: options.host,
      index,
      uuid: `cpu-${options.host}-${index}`,
      name: 'CPU slot',
      acceleratorClass: 'cpu',
      memoryMb,
      taskQueue: slotTaskQueue(options.host, `cpu${index}`),
      runtimeTags: extraTags,
    })),
  };
}
