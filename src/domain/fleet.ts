import type { Authorization } from './authorization.js';
import type { HostFencing } from './limits.js';
import type { HostTopology } from './topology.js';
/** What the fleet is made of. Pure: shared by workers, the pool workflow and tests. */

export type AcceleratorClass = string; // 'h100', 'a100', 'l4', ..., 'cpu'

/** One schedulable accelerator: a GPU, or a CPU slot on a host without GPUs. */
export interface Slot {
  slotId: string; // unique in the fleet: `${host}/${index}` or `${host}/cpu${n}`
  host: string;
  index: number;
  uuid: string;
  name: string;
  acceleratorClass: AcceleratorClass;
  memoryMb: number;
  taskQueue: string;
  runtimeTags: string[];
  /**
   * The NVLink island of this GPU on its host (GPUs joined by NVLink, from `nvidia-smi topo -m`;
   * topology.ts). Absent where the host reported no topology: the GPU counts as its own island.
   */
  nvlinkIsland?: number;
  /** The NUMA node this GPU is attached to; absent or null where unknown. */
  numaNode?: number | null;
}

export interface HostRegistration {
  host: string;
  hostQueue: string;
  slots: Slot[];
  driverVersion?: string;
  /** Datasets present on the host (names under its datasets directory), for data locality. */
  datasets: string[];
  /** Software environment: interpreter and runtime versions. */
  software: Record<string, string>;
  registeredAt: number;
  /** One value per worker process start: a new one means the worker restarted. */
  incarnation?: string;
  /** Experiments whose training this worker still holds (re-attached after a restart): their leases stay. */
  liveRuns?: string[];
  /**
   * The leases of the runs it trains now, sent when it re-creates a pool that was gone (terminated):
   * the new pool holds them again, so neither their runs are stopped nor their slots given away.
   */
  liveLeases?: {
    experimentId: string;
    leaseId: string;
    /** The lead slot of the lease. */
    slotId: string;
    /** Every slot of a gang lease, in its order (absent for a 1-GPU lease). */
    slotIds?: string[];
  }[];
  /** How often this worker heartbeats (absent in registrations of older workers). */
  heartbeatMs?: number;
  /** Its fencing time and kill grace: how soon its runs stop once their leases go unconfirmed. */
  fencing?: HostFencing;
  /** Its GPU topology as the worker read it at start (absent from older workers and CPU hosts). */
  topology?: HostTopology;
  /** The worker's signed request to register this host (action register_host, over the rest of this object). */
  authorization?: Authorization;
}

const KNOWN_CLASSES = [
  'h200',
  'h100',
  'gh200',
  'b200',
  'a100',
  'a10g',
  'a10',
  'a6000',
  'l40s',
  'l40',
  'l4',
  'v100',
  't4',
  'rtx4090',
  'rtx3090',
];

/** Derives the accelerator class from an `nvidia-smi` name, e.g. "NVIDIA H100 80GB HBM3" → "h100". */
export function acceleratorClassFromName(name: string): AcceleratorClass {
  const compact = name
    .toLowerCase()
    .replace(/nvidia|geforce|tesla/g, '')
    .replace(/[\s_-]+/g, '');
  const known = KNOWN_CLASSES.find((candidate) => compact.includes(candidate));
  if (known) return known;
  const firstWord = name
    .toLowerCase()
    .replace(/nvidia\s*/g, '')
    .trim()
    .split(/\s+/)[0];
  return firstWord && /^[a-z0-9]+$/.test(firstWord) ? firstWord : 'unknown';
}

export interface GpuQueryRow {
  index: number;
  uuid: string;
  name: string;
  memoryTotalMb: number;
  memoryUsedMb: number;
  utilizationPercent: number | null;
  temperatureC: number | null;
  driverVersion: string;
  /** Uncorrected volatile ECC errors; null where the GPU does not report ECC. */
  eccErrors: number | null;
}

/** The fields expctl asks `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` for, in order. */
export const GPU_QUERY_FIELDS = [
  'index',
  'uuid',
  'name',
  'memory.total',
  'memory.used',
  'utilization.gpu',
  'temperature.gpu',
  'driver_version',
  'ecc.errors.uncorrected.volatile.total',
];

function numberOrNull(raw: string | undefined): number | null {
  const value = Number(raw);
  return raw === undefined || raw === '' || raw.includes('N/A') || Number.isNaN(value) ? null : value;
}

export function parseGpuQuery(csv: string): GpuQueryRow[] {
  return csv
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .map((line, lineNo) => {
      const cells = line.split(',').map((cell) => cell.trim());
      if (cells.length < GPU_QUERY_FIELDS.length) {
        throw new Error(
          `nvidia-smi line ${lineNo + 1} has ${cells.length} fields, expected ${GPU_QUERY_FIELDS.length}: "${line}"`,
        );
      }
      const [index, uuid, name, memTotal, memUsed, util, temp, driver, ecc] = cells as [
        string,
        string,
        string,
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      const memoryTotalMb = numberOrNull(memTotal);
      if (numberOrNull(index) === null || memoryTotalMb === null)
        throw new Error(`nvidia-smi line ${lineNo + 1} is not a GPU row: "${line}"`);
      return {
        index: Number(index),
        uuid,
        name,
        memoryTotalMb,
        memoryUsedMb: numberOrNull(memUsed) ?? 0,
        utilizationPercent: numberOrNull(util),
        temperatureC: numberOrNull(temp),
        driverVersion: driver,
        eccErrors: numberOrNull(ecc),
      };
    });
}

/** How often a worker reports to the pool unless told otherwise (`expctl worker --heartbeat`). */
export const DEFAULT_POOL_HEARTBEAT_MS = 10_000;

/** Heartbeats a host may miss before the pool declares it lost, whatever the pool's limit says. */
export const MISSED_HEARTBEATS_BEFORE_LOST = 2;

/**
 * How long a host may stay silent before it is lost: the pool's limit, but never less than
 * MISSED_HEARTBEATS_BEFORE_LOST of the host's own heartbeat periods. A limit shorter than the
 * period would take live hosts offline between two heartbeats and revoke their runs.
 */
export function silenceLimitMs(poolLimitMs: number, hostHeartbeatMs: number | undefined): number {
  return Math.max(poolLimitMs, MISSED_HEARTBEATS_BEFORE_LOST * (hostHeartbeatMs ?? 0));
}

/** What a drain (or undrain) of a host or slot did: the operator is told exactly this. */
export interface DrainOutcome {
  target: string;
  drained: boolean;
  /** Slots whose state it changed. */
  changed: string[];
  /** Slots that were already in that state. */
  unchanged: string[];
  /** Runs that still hold a lease on the target's slots (a drain lets them finish). */
  leased: { slotId: string; experimentId: string }[];
}

/** The outcome of setting `drained` on these slots, read before the change is made. */
export function drainOutcome(
  target: string,
  drained: boolean,
  entries: { slot: { slotId: string }; draining: boolean; lease: { experimentId: string } | null }[],
): DrainOutcome {
  return {
    target,
    drained,
    changed: entries.filter((entry) => entry.draining !== drained).map((entry) => entry.slot.slotId),
    unchanged: entries.filter((entry) => entry.draining === drained).map((entry) => entry.slot.slotId),
    leased: entries.flatMap((entry) =>
      entry.lease ? [{ slotId: entry.slot.slotId, experimentId: entry.lease.experimentId }] : [],
    ),
  };
}
