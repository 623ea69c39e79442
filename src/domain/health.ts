import type { GpuQueryRow } from './fleet.js';

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

/** What a worker host measures about itself. */
export interface HostHealthReport {
  host: string;
  checkedAt: string;
  gpus: (GpuQueryRow & { slotId: string })[];
  slotIds: string[];
  diskFreeMb: number | null;
  error: string | null;
}

export interface SlotProblem {
  slotId: string;
  reason: string;
}

/** Every problem that should take a slot out of service, with a readable reason. */
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
