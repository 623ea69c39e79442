import { fleetPool } from './pool.js';
import { connectClient } from '../../temporal/connection.js';
import { ensureHealthSchedule } from '../../client/schedules.js';
import { formatTable, printJson, wantsJson } from '../output.js';

/** `expctl health`: the latest scheduled health check of every host, and what it drained. */
export async function healthCommand(options: { json?: boolean }): Promise<void> {
  const client = await connectClient();
  const pool = await fleetPool(client);
  if (wantsJson(options)) return printJson(pool.health);
  const rows = Object.values(pool.health).flatMap(({ report, problems }) => {
    const gpuRows = report.gpus.map((gpu) => [
      report.host,
      gpu.slotId,
      gpu.temperatureC,
      `${gpu.memoryUsedMb}/${gpu.memoryTotalMb}`,
      gpu.utilizationPercent,
      gpu.eccErrors,
      report.diskFreeMb,
      problems
        .filter((p) => p.slotId === gpu.slotId)
        .map((p) => p.reason)
        .join('; ') || 'ok',
      report.checkedAt,
    ]);
    return gpuRows.length > 0
      ? gpuRows
      : [
          [
            report.host,
            report.slotIds.join(','),
            null,
            null,
            null,
            null,
            report.diskFreeMb,
            problems.map((p) => p.reason).join('; ') || (report.error ?? 'ok'),
            report.checkedAt,
          ],
        ];
  });
  if (rows.length === 0)
    return console.log('no health check has run yet (the expctl-health Schedule runs every minute)');
  console.log(
    formatTable(['host', 'slot', 'temp_c', 'mem_mb', 'util_%', 'ecc', 'disk_free_mb', 'verdict', 'checked_at'], rows),
  );
}

export async function scheduleEnsureCommand(): Promise<void> {
  const client = await connectClient();
  const outcome = await ensureHealthSchedule(client);
  console.log(
    outcome === 'created'
      ? 'created Schedule expctl-health (health check every minute)'
      : 'Schedule expctl-health already exists',
  );
}
