import { ScheduleAlreadyRunning, type Client } from '@temporalio/client';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { HEALTH_SCHEDULE_ID, healthCheckWorkflow } from '../workflows/health.js';

/** Creates the fleet health Schedule (every minute, never overlapping) unless it exists. */
export async function ensureHealthSchedule(client: Client, every = '1m'): Promise<'created' | 'exists'> {
  try {
    await client.schedule.create({
      scheduleId: HEALTH_SCHEDULE_ID,
      spec: { intervals: [{ every }] },
      action: {
        type: 'startWorkflow',
        workflowType: healthCheckWorkflow,
        taskQueue: CONTROL_TASK_QUEUE,
        workflowId: 'expctl-health-check',
      },
      policies: { overlap: 'SKIP', catchupWindow: '1m' },
      memo: {
        purpose:
          'expctl fleet health: drains GPUs that run hot, report ECC errors or lack disk; returns recovered ones',
      },
    });
    return 'created';
  } catch (error) {
    if (error instanceof ScheduleAlreadyRunning) return 'exists';
    throw error;
  }
}
