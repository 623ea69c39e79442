import { quotableLine } from './classify.js';
import { parseGpuQuery, type GpuQueryRow } from './fleet.js';
import type { GpuFailure } from './telemetry.js';

/** Health rules for the scheduled fleet check. Pure: the health workflow decides with them. */

export interface HealthThresholds {
  maxTemperatureC: number;
  maxEccErrors: number;
  minDiskFreeMb: number;
}

export const DEFAULT_HEALTH_THRESHOLDS: HealthThresholds = {
  maxTemperatureC: 90,
  maxEccErrors: 0,
  minDiskFreeMb: 2048,
};

/** A GPU the host registered, as its health check expects to find it. */
export interface ExpectedGpu {
  slotId: string;
  index: number;
  uuid: string;
}

/** What a worker host measures about itself. */
export interface HostHealthReport {
  host: string;
  checkedAt: string;
  gpus: (GpuQueryRow & { slotId: string })[];
  /** The GPUs it registered: one nvidia-smi no longer lists is a problem of that GPU (absent from older workers). */
  expectedGpus?: ExpectedGpu[];
  /** GPUs nvidia-smi listed as lost (`[GPU is lost]` in their row), by uuid, with what it said. */
  lostGpus?: { uuid: string; said: string }[];
  /** nvidia-smi's other lines about a lost GPU ("Unable to determine the device handle for GPU …"). */
  nvidiaSmiSaid?: string[];
  slotIds: string[];
  diskFreeMb: number | null;
  error: string | null;
}

export interface SlotProblem {
  slotId: string;
  reason: string;
}

/** nvidia-smi's words for a GPU it cannot reach, in a row's cell or a line of its own. */
const LOST_TEXT = /GPU is lost|fallen off the bus|requires reset|Unable to determine the device handle/i;

/** The health query's answer, read line by line: GPU rows, GPUs marked lost, and lines about lost GPUs. */
export interface HealthQueryReading {
  rows: GpuQueryRow[];
  lostGpus: { uuid: string; said: string }[];
  said: string[];
}

/**
 * Reads nvidia-smi's answer to the health query. When a GPU is lost, nvidia-smi still lists the
 * others (and exits non-zero): their rows count, the lost one is named by its row's uuid or missing.
 * Any other line that is not a GPU row makes the answer unreadable (thrown, as parseGpuQuery does).
 */
export function readHealthQuery(text: string): HealthQueryReading {
  const reading: HealthQueryReading = { rows: [], lostGpus: [], said: [] };
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '') continue;
    if (LOST_TEXT.test(line)) {
      const [, uuid] = line.split(',').map((cell) => cell.trim());
      if (uuid?.startsWith('GPU-')) reading.lostGpus.push({ uuid, said: quotableLine(line.match(LOST_TEXT)![0]) });
      else reading.said.push(quotableLine(line));
      continue;
    }
    reading.rows.push(...parseGpuQuery(line));
  }
  return reading;
}

/**
 * nvidia-smi's rows as the host's GPU slots, matched by uuid: when a GPU falls off the bus the
 * driver numbers the others anew, so an index may name another GPU than the one registered.
 */
export function matchGpuRows(expected: readonly ExpectedGpu[], rows: readonly GpuQueryRow[]): HostHealthReport['gpus'] {
  return rows.flatMap((row) => {
    const gpu = expected.find((e) => e.uuid === row.uuid);
    return gpu ? [{ ...row, slotId: gpu.slotId }] : [];
  });
}

/**
 * Every problem that should take a slot out of service, with a readable reason. A problem of one
 * GPU (missing, hot, ECC errors) is that GPU's only: the host's other GPUs stay in service. Only a
 * check that failed as a whole, or a full disk, is every slot's.
 */
export function assessHealth(
  report: HostHealthReport,
  thresholds: HealthThresholds = DEFAULT_HEALTH_THRESHOLDS,
): SlotProblem[] {
  if (report.error) return report.slotIds.map((slotId) => ({ slotId, reason: `health check failed: ${report.error}` }));
  const problems: SlotProblem[] = [];
  if (report.diskFreeMb !== null && report.diskFreeMb < thresholds.minDiskFreeMb) {
    for (const slotId of report.slotIds)
      problems.push({
        slotId,
        reason: `only ${report.diskFreeMb} MB free in the work directory (< ${thresholds.minDiskFreeMb} MB)`,
      });
  }
  for (const gpu of report.expectedGpus ?? []) {
    if (report.gpus.some((row) => row.slotId === gpu.slotId)) continue;
    problems.push({ slotId: gpu.slotId, reason: missingGpuReason(report, gpu) });
  }
  for (const gpu of report.gpus) {
    if (gpu.temperatureC !== null && gpu.temperatureC >= thresholds.maxTemperatureC) {
      problems.push({
        slotId: gpu.slotId,
        reason: `temperature ${gpu.temperatureC} C >= ${thresholds.maxTemperatureC} C`,
      });
    }
    if (gpu.eccErrors !== null && gpu.eccErrors > thresholds.maxEccErrors) {
      problems.push({ slotId: gpu.slotId, reason: `${gpu.eccErrors} uncorrected ECC errors` });
    }
  }
  return problems;
}

/** Why a registered GPU is missing from the answer: listed as lost, or not listed (with what nvidia-smi said). */
function missingGpuReason(report: HostHealthReport, gpu: ExpectedGpu): string {
  const lost = report.lostGpus?.find((l) => l.uuid === gpu.uuid);
  if (lost) return `nvidia-smi reports GPU ${gpu.index} (${gpu.uuid}) lost: ${lost.said}`;
  const said = report.nvidiaSmiSaid?.length ? ` (nvidia-smi: ${report.nvidiaSmiSaid.join('; ')})` : '';
  return `nvidia-smi no longer lists GPU ${gpu.index} (${gpu.uuid})${said}`;
}

/**
 * The drain reason of a GPU that failed under a run. A health drain like the scheduled check's:
 * a later check that finds the GPU fine lifts it.
 */
export function gpuFailureDrainReason(failure: GpuFailure, experimentId: string): string {
  return `health: GPU ${failure.index} (${failure.uuid}) failed under ${experimentId}: ${failure.evidence}`;
}

/**
 * Whether a health report that finds a slot fine may lift its health drain: only a report measured
 * after the evidence that drained it (both are the host's clock), so a check that was already under
 * way when the GPU failed does not undo the drain.
 */
export function reportLiftsDrain(checkedAt: string, evidenceAt: string | undefined): boolean {
  if (evidenceAt === undefined) return true;
  const checked = Date.parse(checkedAt);
  const seen = Date.parse(evidenceAt);
  return Number.isNaN(seen) || !(checked <= seen);
}
