type Cleanup = () => Promise<unknown>;
import { EXIT_CODES } from '../domain/exit-codes.js';

// SIGHUP: the terminal that started it closed; the stack stops as on Ctrl-C rather than dying mid-shutdown.
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Everything `expctl dev` starts, stopped in reverse order by one SIGINT, SIGTERM or SIGHUP at any moment:
 * a stop during start-up aborts the step in progress, waits for it to let go, then undoes
 * every step taken so far, and the process exits 0.
 */
export class StackLifetime {
  private readonly controller = new AbortController();
  private readonly cleanups: Cleanup[] = [];
  private stopping: Promise<void> | undefined;
  private inStartup: Promise<unknown> = Promise.resolve();
  private resolveFinished!: () => void;
  /** Resolves once a stop has undone everything. */
  readonly finished = new Promise<void>((resolve) => (this.resolveFinished = resolve));
  private readonly onSignal = (signal: NodeJS.Signals) => {
    if (this.stopping) {
      this.log(`expctl: already stopping (${signal} again ignored) ...`);
      return;
    }
    void this.stop().then(() => process.exit(EXIT_CODES.decided));
  };

  constructor(readonly log: (line: string) => void) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get stopped(): boolean {
    return this.controller.signal.aborted;
  }

  /** Takes these signals over from the entry point's early handlers (set while the CLI loads). */
  handleSignals(): void {
    for (const name of SIGNALS) {
      for (const listener of process.listeners(name)) {
        if ((listener as { expctlEarlyExit?: boolean }).expctlEarlyExit) process.removeListener(name, listener);
      }
      process.on(name, this.onSignal);
    }
  }

  releaseSignals(): void {
    for (const name of SIGNALS) process.removeListener(name, this.onSignal);
  }

  /** Registers how to undo a step; undone last-first. */
  onStop(cleanup: Cleanup): void {
    this.cleanups.push(cleanup);
  }

  /** Runs the start-up; a stop waits for it to settle before undoing anything. */
  startup<T>(run: () => Promise<T>): Promise<T> {
    const promise = run();
    this.inStartup = promise.catch(() => undefined);
    return promise;
  }

  /** Waits `ms`; false if a stop began meanwhile. */
  async sleep(ms: number): Promise<boolean> {
    if (this.stopped) return false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          resolve();
        },
        { once: true },
      );
    });
    return !this.stopped;
  }

  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      this.controller.abort();
      this.log('\nexpctl: stopping workers and the Temporal server ...');
      await this.inStartup;
      for (const cleanup of this.cleanups.reverse()) {
        await cleanup().catch((error: Error) => this.log(`expctl: while stopping: ${error.message}`));
      }
      this.log('expctl: stopped; state kept for the next start.');
      this.resolveFinished();
    })());
  }
}
