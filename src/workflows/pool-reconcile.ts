import { getExternalWorkflowHandle, log, proxyActivities } from '@temporalio/workflow';
import { silenceLimitMs } from '../domain/fleet.js';
import type { createLeaseHolderActivities } from '../activities/lease-holders.js';
import { CONTROL_ACTIVITY } from './control-retry.js';
import { leaseRevokedSignal, type HostEntry } from './definitions.js';
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
 * Reconciliation: the pool's view against the world. Hosts that stopped heartbeating go offline
 * (their leases revoked); leases whose holders ended without releasing them are freed.
 */
export class Reconciler {
  private lastWake = Date.now();
  private lastHolderCheck = Date.now();
  private checkingHolders = false;

  constructor(private readonly state: PoolState) {}

  /** How long the main loop may sleep: until the first host's silence limit, or the next holder check. */
  nextWakeMs(): number | undefined {
    const expiry = this.nextExpiryMs();
    if (this.state.leased().length === 0 && this.state.pool.queue.length === 0) return expiry;
    const check = Math.max(100, this.lastHolderCheck + holderCheckMs(this.state.pool.heartbeatLimitMs) - Date.now());
    return expiry === undefined ? check : Math.min(expiry, check);
  }

  /** One pass after each wake: silent hosts offline, holders checked when due, revocations told. */
  async reconcile(now: number): Promise<void> {
    this.forgiveOutage(now);
    this.expireSilentHosts(now);
    const due = now - this.lastHolderCheck >= holderCheckMs(this.state.pool.heartbeatLimitMs);
    const held = this.state.leased().length > 0 || this.state.pool.queue.length > 0;
    if (!this.checkingHolders && held && due) this.checkHolders();
    await this.deliverRevocations();
  }

  /** How long this host may stay silent: never less than two of its own heartbeat periods. */
  private limitOf(host: HostEntry): number {
    return silenceLimitMs(this.state.pool.heartbeatLimitMs, host.heartbeatMs);
  }

  private onlineHosts(): HostEntry[] {
    return Object.values(this.state.pool.hosts).filter((host) => host.online);
  }

  private nextExpiryMs(): number | undefined {
    const online = this.onlineHosts();
    if (online.length === 0) return undefined;
    const earliest = Math.min(...online.map((host) => host.lastHeartbeat + this.limitOf(host)));
    return Math.max(1000, earliest - Date.now() + 100);
  }

  /**
   * While any host is online the loop wakes at least once per heartbeat limit. Waking much later
   * means the server (or this workflow) was unavailable, not the hosts: their heartbeats could not
   * arrive. Every online host gets a full limit to report again instead of being declared lost.
   */
  private forgiveOutage(now: number): void {
    const longestLimit = Math.max(this.state.pool.heartbeatLimitMs, ...this.onlineHosts().map((h) => this.limitOf(h)));
    if (now - this.lastWake > longestLimit + 5_000) {
      for (const host of this.onlineHosts()) host.lastHeartbeat = Math.max(host.lastHeartbeat, now);
      log.warn('pool was unavailable; host heartbeats get a fresh limit', { stalledMs: now - this.lastWake });
    }
    this.lastWake = now;
  }

  private expireSilentHosts(now: number): void {
    for (const host of Object.values(this.state.pool.hosts)) {
      if (host.online && now - host.lastHeartbeat > this.limitOf(host)) {
        const last = new Date(host.lastHeartbeat).toISOString();
        this.state.takeOffline(
          host.host,
          `no heartbeat from ${host.host} for ${Math.round((now - host.lastHeartbeat) / 1000)}s (last at ${last}); the worker is lost`,
        );
        log.warn('host went offline', { host: host.host });
      }
    }
  }

  /**
   * Frees the leases and queue places of holders that ended without releasing them (terminated
   * from outside expctl, timed out): checked in the background, so placement never waits on it.
   */
  private checkHolders(): void {
    this.checkingHolders = true;
    this.lastHolderCheck = Date.now();
    // One question per lease: a gang's slots share it (asked about by its lead slot).
    const held = [...new Map(this.state.leased().map((entry) => [entry.lease!.leaseId, entry])).values()].map(
      (entry) => ({
        experimentId: entry.lease!.experimentId,
        leaseId: entry.lease!.leaseId,
        slotId: entry.lease!.slotIds?.[0] ?? entry.slot.slotId,
      }),
    );
    const queued = this.state.pool.queue.map((request) => request.experimentId);
    this.state.track(
      holders
        .closedLeaseHolders(held, queued)
        .then((closed) => {
          for (const holder of closed) {
            if (holder.leaseId === null) {
              log.warn('queue place dropped: its holder ended without releasing it', { reason: holder.reason });
              this.state.pool.queue = this.state.pool.queue.filter((r) => r.experimentId !== holder.experimentId);
              this.state.touch();
              continue;
            }
            if (this.state.entriesOf(holder.leaseId).length === 0) continue;
            log.warn('lease freed: its holder ended without releasing it', { reason: holder.reason });
            this.state.endLeaseById(holder.leaseId);
            this.state.touch();
          }
        })
        .catch(() => undefined) // asked again at the next check
        .finally(() => {
          this.checkingHolders = false;
        }),
    );
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
