import { getExternalWorkflowHandle, proxyActivities } from '@temporalio/workflow';
import { assessHealth, type HostHealthReport } from '../domain/health.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../shared/constants.js';
import type { createControlActivities } from '../activities/control.js';
import type { createHostActivities } from '../activities/host.js';
import type { createLeaseHolderActivities } from '../activities/lease-holders.js';
import { healthReportSignal } from './definitions.js';
import { CONTROL_STEP_TIMEOUT } from './control-retry.js';

export const HEALTH_SCHEDULE_ID = 'expctl-health';

/**
 * Run by a Temporal Schedule every minute: ends the records of runs terminated from outside expctl,
 * measures every online host, drains slots that are unhealthy (with the reason) and returns
 * recovered ones to service, through the pool.
 */
export async function healthCheckWorkflow(): Promise<
  { host: string; problems: { slotId: string; reason: string }[] }[]
> {
  const control = proxyActivities<ReturnType<typeof createControlActivities>>({
    taskQueue: CONTROL_TASK_QUEUE,
    startToCloseTimeout: CONTROL_STEP_TIMEOUT,
  });
  // Records of runs terminated from outside expctl that no lease or queue place tied to the pool.
  await proxyActivities<ReturnType<typeof createLeaseHolderActivities>>({
    taskQueue: CONTROL_TASK_QUEUE,
    startToCloseTimeout: CONTROL_STEP_TIMEOUT,
  }).recordRunsTerminatedOutside();
  const hosts = await control.listOnlineHosts();
  const pool = getExternalWorkflowHandle(POOL_WORKFLOW_ID);
  return Promise.all(
    hosts.map(async ({ host, hostQueue }) => {
      const activities = proxyActivities<ReturnType<typeof createHostActivities>>({
        taskQueue: hostQueue,
        scheduleToCloseTimeout: '40s',
        startToCloseTimeout: '30s',
        retry: { maximumAttempts: 2 },
      });
      let report: HostHealthReport;
      try {
        report = await activities.checkHealth();
      } catch (error) {
        // A host that cannot answer its health check is not drained here: silence is the pool's heartbeat rule.
        return {
          host,
          problems: [{ slotId: '*', reason: `health check did not complete: ${(error as Error).message}` }],
        };
      }
      const problems = assessHealth(report);
      await pool.signal(healthReportSignal, { host, report, problems });
      return { host, problems };
    }),
  );
}
