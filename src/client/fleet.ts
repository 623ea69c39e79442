import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { POOL_WORKFLOW_ID } from '../shared/constants.js';
import { drainUpdate, poolPlanQuery, poolStateQuery, type PoolSnapshot } from '../workflows/definitions.js';
import type { DrainOutcome } from '../domain/fleet.js';
import type { QueuePlan } from '../domain/placement.js';
import { signAs } from './sign.js';

/** There is no pool yet: no worker has ever joined this fleet. */
export class NoFleetError extends Error {
  constructor() {
    super('no worker has joined the fleet yet (start one with `expctl worker`)');
  }
}

/** The pool's whole state (slots, hosts, queue, health, usage), for operators' views. */
export async function poolState(client: Client): Promise<PoolSnapshot> {
  try {
    return await client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new NoFleetError();
    throw error;
  }
}

/** The pool's plan for its queue: the GPUs it holds for waiting runs, and why each waits. */
export type PoolPlan = Omit<QueuePlan, 'grants'> & { at: number };
export async function poolPlan(client: Client): Promise<PoolPlan> {
  return client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolPlanQuery);
}

/** An operator's signed drain (or undrain) of a host or slot; returns what it changed and what runs there. */
export async function drainTarget(
  client: Client,
  change: { target: string; drained: boolean; reason: string },
): Promise<DrainOutcome> {
  return client.workflow
    .getHandle(POOL_WORKFLOW_ID)
    .executeUpdate(drainUpdate, { args: [{ ...change, authorization: signAs('drain', change.target, change) }] });
}
