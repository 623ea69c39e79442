import { KeyedQueue } from '../shared/keyed-queue.js';

/**
 * Work a finished run leaves for after its result is reported (removing its worktree), so the
 * slot's next run is not kept waiting for it. Work on one path runs in order, and a run about to
 * reuse a path waits for it (`settled`); a worker that stops waits for all of it (`drain`).
 */
export class DeferredCleanup extends KeyedQueue {
  /** Runs `work` after earlier work on `path`, in the background; a failure leaves the path to the next run. */
  defer(path: string, work: () => Promise<unknown>): void {
    void this.run(path, work).catch(() => undefined);
  }
}
