/**
 * Work a finished run leaves for after its result is reported (removing its worktree), so the
 * slot's next run is not kept waiting for it. Work on one path runs in order, and a run about to
 * reuse a path waits for the work on it; a worker that stops waits for all of it.
 */
export class DeferredCleanup {
  private readonly pending = new Map<string, Promise<void>>();

  /** Runs `work` after earlier work on `path`; its failure is the caller's to have logged. */
  defer(path: string, work: () => Promise<unknown>): void {
    const next = (this.pending.get(path) ?? Promise.resolve()).then(work).then(
      () => undefined,
      () => undefined,
    );
    this.pending.set(path, next);
    void next.then(() => {
      if (this.pending.get(path) === next) this.pending.delete(path);
    });
  }

  /** Resolves once no work on `path` is pending. */
  async settled(path: string): Promise<void> {
    await this.pending.get(path);
  }

  /** Resolves once no work at all is pending. */
  async drain(): Promise<void> {
    await Promise.all(this.pending.values());
  }

  get size(): number {
    return this.pending.size;
  }
}
