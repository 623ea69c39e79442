import {
  ActivityCancelledError,
  ActivityNotFoundError,
  ActivityPausedError,
  ActivityResetError,
  Client,
} from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import type { NativeConnection } from '@temporalio/worker';

/**
 * The host's liveness heartbeats, acknowledged by the server, used as its runs' lease confirmations.
 *
 * Why this is safe: the pool takes a host's leases away when its liveness workflow reports it lost,
 * and that happens only after the host's keepHostAlive activity timed out at the server. A heartbeat
 * the server accepted was therefore sent before any such revocation, so it confirms every lease the
 * host held then, as the pool's own answer would. Every other way a lease ends reaches a followed
 * run through its train task (the workflow cancels it, or closes and the task is not found).
 *
 * Each keepHostAlive activity is an epoch. A run is confirmed by the epoch it was followed in only:
 * once that activity is gone (the host was taken for lost, the worker restarted, the limit changed)
 * its runs ask the pool again, which denies a lease it took away meanwhile.
 */
export class HostConfirmations {
  /** `periodMs`: how often the host heartbeats (livenessPeriodMs). */
  constructor(private readonly periodMs: number) {}

  private epoch = 0;
  private alive = false;
  private confirmedAt: number | undefined;

  /** A keepHostAlive activity began: a new epoch, which confirms nothing until a heartbeat is accepted. */
  begin(): number {
    this.epoch += 1;
    this.alive = true;
    this.confirmedAt = undefined;
    return this.epoch;
  }

  /** The server accepted the epoch's heartbeat sent at `sentAtMs`. */
  confirmed(epoch: number, sentAtMs: number): void {
    if (epoch === this.epoch && this.alive) this.confirmedAt = Math.max(this.confirmedAt ?? 0, sentAtMs);
  }

  /** The epoch's activity is gone (not found, canceled, ended): what it confirmed no longer counts. */
  end(epoch: number): void {
    if (epoch === this.epoch) this.alive = false;
  }

  /** Whether the server accepted, in the current epoch, a heartbeat sent within the last `ms`. */
  confirmedWithin(ms: number, now: number = Date.now()): boolean {
    return this.alive && this.confirmedAt !== undefined && now - this.confirmedAt < ms;
  }

  /** Whether the heartbeats are being accepted now: one may go unanswered (two periods). */
  acceptedNow(now: number = Date.now()): boolean {
    return this.confirmedWithin(2 * this.periodMs, now);
  }

  /** The epoch a run followed from now belongs to; undefined while no activity keeps the host alive. */
  current(): number | undefined {
    return this.alive ? this.epoch : undefined;
  }

  /**
   * When the host was last confirmed in `epoch` (epoch ms, the heartbeat's sending time): undefined
   * when the epoch is over or has confirmed nothing yet, and then the run asks the pool itself.
   */
  confirmedIn(epoch: number | undefined): number | undefined {
    return epoch !== undefined && epoch === this.epoch && this.alive ? this.confirmedAt : undefined;
  }
}

/** Sends one heartbeat of the activity with this task token; resolves once the server accepted it. */
export type AcknowledgedHeartbeat = (taskToken: Uint8Array, details: unknown) => Promise<void>;

/**
 * The server's answer that an activity is over for this worker: it is gone (timed out, its workflow
 * closed) or asked to stop. The SDK, which sends none of these heartbeats, would never hear it.
 */
export function activityOver(error: unknown): boolean {
  return (
    error instanceof ActivityNotFoundError ||
    error instanceof ActivityCancelledError ||
    error instanceof ActivityPausedError ||
    error instanceof ActivityResetError
  );
}

/**
 * Heartbeats sent through the worker's own connection, the one its tasks come through (a host that
 * cannot be reached there confirms nothing), each bounded by `deadlineMs`.
 */
export function acknowledgedHeartbeatOn(
  options: { connection: NativeConnection; namespace: string; dataConverter: DataConverter },
  deadlineMs: number,
): AcknowledgedHeartbeat {
  const client = new Client(options);
  return (taskToken, beat) =>
    client.withDeadline(Date.now() + deadlineMs, () => client.activity.heartbeat(taskToken, beat));
}
