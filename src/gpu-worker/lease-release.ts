import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { POOL_WORKFLOW_ID } from '../shared/constants.js';
import {
  leaseGrantedSignal,
  releaseLeaseSignal,
  releaseLeaseUpdate,
  successorQuery,
  type Lease,
} from '../workflows/definitions.js';

/** The longest the pool may take to answer a release at a run's exit. */
const RELEASE_DEADLINE_MS = 10_000;

/**
 * Tells a run the pool granted it a lease in another caller's answer (the pool sends no signal for
 * it); a run that has ended meanwhile gives the lease back.
 */
export async function tellGranted(client: Client, lease: Lease): Promise<void> {
  try {
    await client.workflow.getHandle(lease.experimentId).signal(leaseGrantedSignal, lease);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError)
      await client.workflow
        .getHandle(POOL_WORKFLOW_ID)
        .signal(releaseLeaseSignal, { experimentId: lease.experimentId, leaseId: lease.leaseId })
        .catch(() => undefined);
  }
}

/**
 * Hands the slot on at a run's exit. The run lined up behind it (asked by query, which writes no
 * history) is told its lease by this worker, and the pool hears nothing: its lease stands from its
 * line-up. With nobody lined up, the lease goes back as an update: the pool's grant pass hands the
 * slot on in the same workflow task and names the runs it granted, which the worker tells itself
 * (the pool sends no signal for them). A run that has ended gives its lease back; one that could
 * not be told asks the pool again within its renewal interval and is given the lease then.
 */
export function releaseLeaseAtExit(
  client: Client,
  log: (line: string) => void,
): (experimentId: string, leaseId: string) => Promise<void> {
  const pool = client.workflow.getHandle(POOL_WORKFLOW_ID);
  const withinDeadline = <T>(call: () => Promise<T>) => client.withDeadline(Date.now() + RELEASE_DEADLINE_MS, call);
  return async (experimentId, leaseId) => {
    try {
      const successor = await withinDeadline(() => pool.query(successorQuery, leaseId));
      if (successor) return await tellGranted(client, successor);
      const { granted } = await withinDeadline(() =>
        pool.executeUpdate(releaseLeaseUpdate, { args: [{ experimentId, leaseId }] }),
      );
      await Promise.all(granted.map((lease) => tellGranted(client, lease)));
    } catch (error) {
      log(`expctl worker: could not give ${experimentId}'s lease back at its exit: ${(error as Error).message}`);
      throw error;
    }
  };
}
