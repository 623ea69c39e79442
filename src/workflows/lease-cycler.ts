import { condition, continueAsNew, getExternalWorkflowHandle, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Requirements } from '../domain/request.js';
import { POOL_WORKFLOW_ID } from '../shared/constants.js';
import { leaseGrantedSignal, releaseLeaseSignal, requestLeaseSignal, type Lease } from './definitions.js';

const CYCLES_PER_RUN = 100;

/**
 * Pool diagnostics: acquires and releases a lease `remaining` times through the real protocol,
 * as an experiment would, without training. The benchmark and the history-bound test use it.
 */
export async function leaseCyclerWorkflow(input: {
  remaining: number;
  requirements: Requirements;
  done?: number;
}): Promise<{ cycles: number }> {
  const pool = getExternalWorkflowHandle(POOL_WORKFLOW_ID);
  const experimentId = workflowInfo().workflowId;
  let lease: Lease | undefined;
  setHandler(leaseGrantedSignal, (granted) => {
    lease = granted;
  });
  let done = input.done ?? 0;
  for (let i = 0; i < Math.min(input.remaining, CYCLES_PER_RUN); i++) {
    lease = undefined;
    await pool.signal(requestLeaseSignal, { experimentId, requirements: input.requirements, priority: 0 });
    await condition(() => lease !== undefined);
    await pool.signal(releaseLeaseSignal, { experimentId });
    done++;
  }
  const remaining = input.remaining - Math.min(input.remaining, CYCLES_PER_RUN);
  if (remaining > 0)
    await continueAsNew<typeof leaseCyclerWorkflow>({ remaining, requirements: input.requirements, done });
  return { cycles: done };
}
