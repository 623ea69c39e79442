import { getExternalWorkflowHandle, log, ParentClosePolicy, proxyActivities, startChild } from '@temporalio/workflow';
import { silenceLimitMs } from '../domain/fleet.js';
import type { createLeaseHolderActivities } from '../activities/lease-holders.js';
import { CONTROL_ACTIVITY } from './control-retry.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { leaseRevokedSignal, livenessLimitSignal, type HostEntry } from './definitions.js';
import { hostLivenessWorkflow, livenessWorkflowId } from './host-liveness.js';
import { tellPromoted } from './pool-requests.js';
import type { PoolState } from './pool-state.js';

/** The pool's question about its leases' holders (lease-holders.ts), on the control worker. */
const holders = proxyActivities<ReturnType<typeof createLeaseHolderActivities>>({
  ...CONTROL_ACTIVITY,
  retry: { initialInterval: '1s', maximumAttempts: 3 },
});

/**
 * How often the pool checks that its leases' holders still run: half its heartbeat limit (at
 * least 2 s, at most 30 s), so a terminated holder's slot is free within the limit.
 */
export function holderCheckMs(heartbeatLimitMs: number): number {
  return Math.min(30_000, Math.max(2_000, Math.floor(heartbeatLimitMs / 2)));
}

/**
 * Reconciliation: the pool's view against the world. Each online host is watched by its liveness
 * workflow (which reports it lost); leases whose holders ended without releasing them are freed.
 */
export class Reconciler {
  private lastHolderCheck = Date.now();
  private checkingHolders = false;

  constructor(private readonly state: PoolState) {}

  /** How long the main loop may sleep: until the next holder check while anything is leased or queued. */
  nextWakeMs(): number | undefined {
    if (this.state.leased().length === 0 && this.state.pool.queue.length === 0) return undefined;
    return Math.max(100, this.lastHolderCheck + holderCheckMs(this.state.pool.heartbeatLimitMs) - Date.now());
  }

  /** One pass after each wake: hosts watched, holders checked when due, revocations told. */
  async reconcile(now: number): Promise<void> {
    this.watchHosts();
    const due = now - this.lastHolderCheck >= holderCheckMs(this.state.pool.heartbeatLimitMs);
    const held = this.state.leased().length > 0 || this.state.pool.queue.length > 0;
    if (!this.checkingHolders && held && due) this.checkHolders();
    await this.deliverRevocations();
  }

  /** How long this host may stay silent: never less than two of its own heartbeat periods. */
  private limitOf(host: HostEntry): number {
    return silenceLimitMs(this.state.pool.heartbeatLimitMs, host.heartbeatMs);
  }

  /**
   * Every online incarnation has a liveness workflow (host-liveness.ts) that judges its silence
   * outside this history and reports it lost; each is told when the host's silence limit changes.
   * The pool hears nothing from a live host.
   */
  private watchHosts(): void {
    for (const host of Object.values(this.state.pool.hosts)) {
      if (!host.online || host.incarnation === undefined) continue;
      const limitMs = this.limitOf(host);
      if (host.liveness?.incarnation !== host.incarnation) this.startWatching(host, host.incarnation, limitMs);
      else if (host.liveness.limitMs !== limitMs) this.tellLimit(host.host, host.incarnation, limitMs);
      host.liveness = { incarnation: host.incarnation, limitMs };
    }
  }

  private startWatching(host: HostEntry, incarnation: string, limitMs: number): void {
    const workflowId = livenessWorkflowId(host.host, incarnation);
    this.state.track(
      startChild(hostLivenessWorkflow, {
        workflowId,
        taskQueue: CONTROL_TASK_QUEUE,
        args: [{ host: host.host, hostQueue: host.hostQueue, incarnation, limitMs }],
        // It outlives this run (continue-as-new) and a pool terminated by hand: it reports to whichever runs.
        parentClosePolicy: ParentClosePolicy.ABANDON,
      }).then(
        () => undefined,
        (error: Error) => {
          // Already watched (the same incarnation registered again after it was taken offline): the watch goes on.
          if (error.name === 'WorkflowExecutionAlreadyStartedError') return this.signalLimit(workflowId, limitMs);
          log.error('could not start a host liveness workflow', { host: host.host, error: error.message });
        },
      ),
    );
  }

  private tellLimit(host: string, incarnation: string, limitMs: number): void {
    this.state.track(this.signalLimit(livenessWorkflowId(host, incarnation), limitMs));
  }

  private signalLimit(workflowId: string, limitMs: number): Promise<void> {
    return getExternalWorkflowHandle(workflowId)
      .signal(livenessLimitSignal, { limitMs })
      .catch(() => undefined); // it ended: the host was lost or left, and is offline by now
  }

  /**
   * Frees the leases and queue places of holders that ended without releasing them (terminated
   * from outside expctl, timed out): checked in the background, so placement never waits on it.
   */
  private checkHolders(): void {
    this.checkingHolders = true;
    this.lastHolderCheck = Date.now();
    // One question per lease: a gang's slots share it (asked about by its lead slot); a lined-up run's too.
    const leased = this.state.leased();
    const held = [...new Map(leased.map((entry) => [entry.lease!.leaseId, entry])).values()].map((entry) => ({
      experimentId: entry.lease!.experimentId,
      leaseId: entry.lease!.leaseId,
      slotId: entry.lease!.slotIds?.[0] ?? entry.slot.slotId,
      ...(entry.next ? { handedOn: true } : {}),
    }));
    const linedUp = leased.flatMap((entry) =>
      entry.next
        ? [
            {
              experimentId: entry.next.lease.experimentId,
              leaseId: entry.next.lease.leaseId,
              slotId: entry.slot.slotId,
              linedUp: true,
            },
          ]
        : [],
    );
    const queued = this.state.pool.queue.map((request) => request.experimentId);
    this.state.track(
      holders
        .closedLeaseHolders([...held, ...linedUp], queued)
        .then((closed) => {
          for (const holder of closed) {
            if (holder.leaseId === null) {
              log.warn('queue place dropped: its holder ended without releasing it', { reason: holder.reason });
              this.state.pool.queue = this.state.pool.queue.filter((r) => r.experimentId !== holder.experimentId);
              this.state.touch();
              continue;
            }
            this.freeClosed(holder.leaseId, holder.reason);
          }
        })
        .catch(() => undefined) // asked again at the next check
        .finally(() => {
          this.checkingHolders = false;
        }),
    );
  }

  /**
   * A closed holder's lease: a lined-up run's place is dropped; a holder's lease passes to the run
   * lined up behind it (told by signal: most were handed the slot at the holder's exit already and
   * ignore it), else the slot is free.
   */
  private freeClosed(leaseId: string, reason: string): void {
    const linedUpOn = this.state.linedUpOn(leaseId);
    if (linedUpOn) {
      log.warn('lined-up run dropped: it ended without releasing its place', { reason });
      linedUpOn.next = null;
      this.state.touch();
      return;
    }
    const entries = this.state.entriesOf(leaseId);
    if (entries.length === 0) return;
    const next = entries.find((entry) => entry.next);
    if (next) {
      this.state.handOver(next);
      tellPromoted(this.state, [next.lease!.experimentId]);
    } else {
      log.warn('lease freed: its holder ended without releasing it', { reason });
      this.state.endLeaseById(leaseId);
    }
    this.state.touch();
  }

  private async deliverRevocations(): Promise<void> {
    await Promise.all(
      this.state.pendingRevocations.splice(0).map(
        (revocation) =>
          getExternalWorkflowHandle(revocation.experimentId)
            .signal(leaseRevokedSignal, { leaseId: revocation.leaseId, reason: revocation.reason })
            .catch(() => undefined), // the experiment already ended: nothing to tell
      ),
    );
  }
}
