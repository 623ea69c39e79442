import type { StackLifetime } from './lifetime.js';

/** What the stack supervises: the orchestrator's workers, a host's GPU worker. */
export interface RunnableWorker {
  /** Resolves or rejects when the worker has stopped. */
  run(): Promise<void>;
  /** Stops it when the stack stops; never throws. */
  stop(): Promise<void>;
}

/**
 * The workers run until the stack stops. Their connections retry on their own across server
 * restarts and freezes; should a worker still end with an error, it is logged and created anew
 * rather than taking the stack down.
 */
export class SupervisedWorkers {
  private readonly runs: Promise<void>[] = [];
  private readonly current = new Map<string, RunnableWorker>();

  constructor(private readonly lifetime: StackLifetime) {
    lifetime.onStop(() => this.shutdown());
  }

  async add(name: string, create: () => Promise<RunnableWorker>): Promise<void> {
    this.current.set(name, await create());
    this.runs.push(this.keepRunning(name, create));
  }

  private async keepRunning(name: string, create: () => Promise<RunnableWorker>): Promise<void> {
    const { log } = this.lifetime;
    for (let attempt = 1; !this.lifetime.stopped; attempt++) {
      try {
        await this.current.get(name)!.run();
        if (this.lifetime.stopped) return;
        log(`expctl: the ${name} stopped unexpectedly; starting it again ...`);
      } catch (error) {
        if (this.lifetime.stopped) return;
        log(`expctl: the ${name} failed (${(error as Error).message}); starting it again ...`);
      }
      if (!(await this.lifetime.sleep(Math.min(30_000, 1000 * attempt)))) return;
      try {
        this.current.set(name, await create());
      } catch (error) {
        log(`expctl: could not start the ${name} again yet: ${(error as Error).message}`);
      }
    }
  }

  private async shutdown(): Promise<void> {
    for (const worker of this.current.values()) await worker.stop();
    await Promise.allSettled(this.runs);
  }
}

/**
 * Waits until the pool has the GPU worker's slots. A worker that fails is created anew by its
 * supervisor, so the wait moves to the current one; a refusal is the worker's to report.
 */
export async function joined(current: () => { registered(): Promise<void> }, lifetime: StackLifetime): Promise<void> {
  const slow = setTimeout(() => lifetime.log('expctl: waiting for the pool to register the GPU worker ...'), 10_000);
  try {
    while (!lifetime.stopped) {
      let recheck: NodeJS.Timeout | undefined;
      const done = await Promise.race([
        current()
          .registered()
          .then(
            () => true,
            () => true,
          ),
        new Promise<false>((resolve) => (recheck = setTimeout(() => resolve(false), 1000))),
      ]);
      clearTimeout(recheck);
      if (done) return;
    }
  } finally {
    clearTimeout(slow);
  }
}
