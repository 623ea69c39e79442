import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Catalog } from '../catalog/catalog.js';

export interface HeldLease {
  experimentId: string;
  leaseId: string;
  slotId: string;
}

/** A lease whose holder has ended without releasing it: how it ended, and who ended it where Temporal says. */
export interface ClosedHolder extends HeldLease {
  reason: string;
}

export interface LeaseHolderDeps {
  client: Client;
  catalog: Catalog;
}

/**
 * The pool's check of its leases against their holders. A holder ended from outside expctl (a
 * `temporal workflow terminate`, the Web UI's Terminate, a timeout) never releases its lease, and
 * its slot would be held for ever; the pool frees what this returns, and the worker's lease watch
 * then stops the run's processes.
 */
export function createLeaseHolderActivities({ client, catalog }: LeaseHolderDeps) {
  /** Why the holder is closed (and who closed it, where Temporal says), or null while it runs. */
  const closedBecause = async (experimentId: string): Promise<{ why: string; identity: string | null } | null> => {
    let status: string;
    try {
      status = (await client.workflow.getHandle(experimentId).describe()).status.name;
    } catch (error) {
      if (error instanceof WorkflowNotFoundError)
        return { why: `its workflow ${experimentId} does not exist`, identity: null };
      throw error;
    }
    if (status === 'RUNNING') return null;
    if (status !== 'TERMINATED')
      return { why: `its workflow ended ${status.toLowerCase()} without releasing it`, identity: null };
    const { history } = await client.workflowService.getWorkflowExecutionHistoryReverse({
      namespace: client.options.namespace,
      execution: { workflowId: experimentId },
      maximumPageSize: 1,
    });
    const terminated = history?.events?.[0]?.workflowExecutionTerminatedEventAttributes;
    const by = terminated?.identity ? ` by Temporal identity "${terminated.identity}"` : '';
    const why = terminated?.reason ? ` (reason: ${terminated.reason})` : '';
    return { why: `its workflow was terminated${by}${why}`, identity: terminated?.identity || null };
  };

  return {
    /** The held leases whose holders are closed; each one's release goes to the audit trail. */
    async closedLeaseHolders(leases: HeldLease[]): Promise<ClosedHolder[]> {
      const closed: ClosedHolder[] = [];
      for (const lease of leases) {
        const closedBy = await closedBecause(lease.experimentId);
        if (closedBy === null) continue;
        const { why, identity } = closedBy;
        closed.push({ ...lease, reason: `lease on ${lease.slotId} released: ${why}` });
        await catalog.audit({
          source: `lease/${lease.leaseId}`,
          at: new Date().toISOString(),
          action: 'lease_released',
          target: lease.experimentId,
          actor: identity,
          role: null,
          credentialId: null,
          allowed: true,
          detail: `lease on ${lease.slotId} released by the pool: ${why}`,
        });
      }
      return closed;
    },
  };
}
