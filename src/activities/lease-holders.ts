import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { Catalog } from '../catalog/catalog.js';
import { ACTIVE_STATUSES, isTerminal } from '../domain/experiment.js';

export interface HeldLease {
  experimentId: string;
  leaseId: string;
  slotId: string;
  /** A run lined up behind the slot's lease (pool-requests.ts lineUp), not its holder. */
  linedUp?: boolean;
  /**
   * A run is lined up behind this lease: its holder ending without a release is the usual hand-over
   * at its exit (not audited), unless it was terminated.
   */
  handedOn?: boolean;
}

/**
 * A lease (or, with leaseId and slotId null, a place in the queue) whose holder has ended without
 * releasing it: how it ended, and who ended it where Temporal says.
 */
export interface ClosedHolder {
  experimentId: string;
  leaseId: string | null;
  slotId: string | null;
  reason: string;
}

/**
 * Holders asked about at once: a 1,000-GPU pool asks about 1,000 holders per check, one after the
 * other too slow for the activity's 30 s on a busy server.
 */
const HOLDERS_ASKED_AT_ONCE = 16;

/** `ask` for every item, at most `width` at a time; the answers in the items' order. */
async function inBatches<T, R>(items: T[], width: number, ask: (item: T) => Promise<R>): Promise<R[]> {
  const answers: R[] = [];
  for (let i = 0; i < items.length; i += width)
    answers.push(...(await Promise.all(items.slice(i, i + width).map(ask))));
  return answers;
}

/** The holder as a closed one is named (without what the pool told about it). */
function identify(holder: { experimentId: string; leaseId: string | null; slotId: string | null }) {
  return { experimentId: holder.experimentId, leaseId: holder.leaseId, slotId: holder.slotId };
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
  const closedBecause = async (
    experimentId: string,
  ): Promise<{ why: string; identity: string | null; terminated?: true } | null> => {
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
    return { why: `its workflow was terminated${by}${why}`, identity: terminated?.identity || null, terminated: true };
  };

  /**
   * A terminated run cannot record its own end: its record says so here, `canceled` (an operator
   * stopped it) with who and why, so `show` and `history` never report it running for ever.
   */
  const recordTerminated = async (experimentId: string, why: string) => {
    const record = await catalog.get(experimentId);
    if (!record || isTerminal(record.status)) return;
    const at = new Date().toISOString();
    const reason = `terminated from outside expctl: ${why}`;
    await catalog.apply({
      experimentId,
      status: 'canceled',
      reason,
      events: [{ status: 'canceled', at, note: reason }],
    });
  };

  return {
    /**
     * The held leases and queued requests whose holders are closed; each release goes to the audit
     * trail (not a hand-over to a lined-up run), and a terminated holder's record ends `canceled`.
     */
    async closedLeaseHolders(leases: HeldLease[], queued: string[] = []): Promise<ClosedHolder[]> {
      const closed: ClosedHolder[] = [];
      const holders: (Omit<HeldLease, 'leaseId' | 'slotId'> & { leaseId: string | null; slotId: string | null })[] = [
        ...leases,
        ...queued.map((experimentId) => ({ experimentId, leaseId: null, slotId: null })),
      ];
      const verdicts = await inBatches(holders, HOLDERS_ASKED_AT_ONCE, (holder) => closedBecause(holder.experimentId));
      for (const [i, holder] of holders.entries()) {
        const closedBy = verdicts[i]!;
        if (closedBy === null) continue;
        const { why, identity, terminated } = closedBy;
        if (holder.handedOn && !terminated) {
          closed.push({ ...identify(holder), reason: 'its run ended; the slot went on to the run lined up behind it' });
          continue;
        }
        const what =
          holder.slotId === null
            ? 'place in the queue'
            : holder.linedUp
              ? `place lined up on ${holder.slotId}`
              : `lease on ${holder.slotId}`;
        closed.push({ ...identify(holder), reason: `${what} released: ${why}` });
        await catalog.audit({
          source: holder.leaseId === null ? `queue/${holder.experimentId}` : `lease/${holder.leaseId}`,
          at: new Date().toISOString(),
          action: 'lease_released',
          target: holder.experimentId,
          actor: identity,
          role: null,
          credentialId: null,
          allowed: true,
          detail: `${what} released by the pool: ${why}`,
        });
        if (terminated) await recordTerminated(holder.experimentId, why);
      }
      return closed;
    },

    /**
     * Records of runs whose workflows were terminated while they held neither a slot nor a queue
     * place (validating, waiting for data): their records end `canceled` too, with who and why.
     * Run by the health Schedule (healthCheckWorkflow), once a minute.
     */
    async recordRunsTerminatedOutside(): Promise<string[]> {
      const ended: string[] = [];
      for (const status of ACTIVE_STATUSES) {
        for (const record of await catalog.list({ status, limit: 1000 })) {
          const closedBy = await closedBecause(record.id);
          if (!closedBy?.terminated) continue;
          await catalog.audit({
            source: `experiment/${record.id}`,
            at: new Date().toISOString(),
            action: 'temporal_terminate',
            target: record.id,
            actor: closedBy.identity,
            role: null,
            credentialId: null,
            allowed: true,
            detail: `terminated while ${status}: ${closedBy.why}; its record ends canceled`,
          });
          await recordTerminated(record.id, closedBy.why);
          ended.push(record.id);
        }
      }
      return ended;
    },
  };
}
