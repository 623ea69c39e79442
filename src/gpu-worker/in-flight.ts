/**
 * Server calls a worker starts beside its activities (a look at whether an experiment is still
 * open): a stopping worker waits for them, so none is still retrying when its connection closes.
 */
export class InFlightCalls {
  private readonly calls = new Set<Promise<unknown>>();

  /** The same call, counted while it is in flight. */
  track<A extends unknown[], T>(call: (...args: A) => Promise<T>): (...args: A) => Promise<T> {
    return (...args) => {
      const pending = call(...args);
      this.calls.add(pending);
      const done = () => this.calls.delete(pending);
      pending.then(done, done);
      return pending;
    };
  }

  /** Resolves once every call in flight now has ended, however it ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.calls]);
  }
}
