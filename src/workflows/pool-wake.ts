import { CancellationScope, sleep } from '@temporalio/workflow';

/**
 * The pool's one wake-up timer, kept across the main loop's passes: a pass woken by a message
 * leaves the timer running when it is due soon enough, rather than cancelling it and starting
 * another (two events per pass, every pass). Only a wake needed earlier replaces it.
 */
export class WakeTimer {
  private pending: { at: number; scope: CancellationScope } | undefined;
  /** The timer fired since the last pass took it. */
  fired = false;

  /** Wakes the loop within `ms` (no timer for undefined: a timer already running still fires). */
  within(ms: number | undefined): void {
    if (ms === undefined) return;
    const at = Date.now() + ms;
    if (this.pending && this.pending.at <= at) return;
    this.pending?.scope.cancel();
    const timer = { at, scope: new CancellationScope() };
    this.pending = timer;
    timer.scope
      .run(() => sleep(ms))
      .then(
        () => {
          if (this.pending !== timer) return;
          this.pending = undefined;
          this.fired = true;
        },
        () => undefined,
      );
  }

  /** Whether the timer fired; the pass that asks takes it. */
  take(): boolean {
    const fired = this.fired;
    this.fired = false;
    return fired;
  }
}
