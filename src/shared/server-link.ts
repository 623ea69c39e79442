import { Connection, type Client } from '@temporalio/client';

/** gRPC status codes that mean the server was not reached (rather than that it answered no). */
const UNREACHABLE = new Set<number>([14 /* UNAVAILABLE */, 4 /* DEADLINE_EXCEEDED */]);

/** The address a client talks to, for messages (a client built on another connection says so). */
export function serverAddressOf(client: Client): string {
  return client.connection instanceof Connection ? client.connection.options.address : 'its configured address';
}

/** Whether an error from a Temporal call means the server could not be reached at all. */
export function isConnectionError(error: unknown): boolean {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === 'number' && UNREACHABLE.has(e.code)) return true;
  }
  return false;
}

/** The most specific reason in an error chain, on one line (gRPC's own details where there are some). */
function reasonOf(error: unknown): string {
  let reason = error instanceof Error ? error.message : String(error);
  for (
    let e = error as { code?: unknown; details?: unknown; cause?: unknown } | undefined;
    e;
    e = e.cause as typeof e
  ) {
    // A deadline says only that the call ran out of time (gRPC's text is about its internals).
    if (e.code === 4) return "no answer before the call's deadline";
    if (typeof e.details === 'string' && e.details) reason = e.details;
  }
  // grpc-js ends its connection errors with an empty "Resolution note:".
  return reason
    .split('\n')[0]!
    .replace(/\.?\s*Resolution note:\s*$/, '')
    .slice(0, 300);
}

/**
 * Whether a worker process can reach its Temporal server, told to its operator as it changes:
 * once when the link is lost (and why), a reminder every `remindMs` while it stays lost, and once
 * when it is back (after how long). Fed by calls the process makes anyway (heartbeats, probes).
 */
export class ServerLink {
  private lostAt: number | null = null;
  private remindedAt = 0;

  constructor(
    private readonly who: string,
    private readonly address: string,
    private readonly log: (line: string) => void,
    private readonly now: () => number = Date.now,
    private readonly remindMs = 60_000,
  ) {}

  get lost(): boolean {
    return this.lostAt !== null;
  }

  /** A call reached the server. */
  reached(): void {
    if (this.lostAt === null) return;
    const seconds = ((this.now() - this.lostAt) / 1000).toFixed(0);
    this.lostAt = null;
    this.log(`${this.who}: reconnected to the Temporal server at ${this.address} after ${seconds} s`);
  }

  /** A call did not reach the server. */
  failed(error: unknown): void {
    const now = this.now();
    if (this.lostAt === null) {
      this.lostAt = this.remindedAt = now;
      this.log(
        `${this.who}: lost the Temporal server at ${this.address}: ${reasonOf(error)}; ` +
          'runs already started go on and keep their results here until it is back; retrying',
      );
    } else if (now - this.remindedAt >= this.remindMs) {
      this.remindedAt = now;
      const seconds = ((now - this.lostAt) / 1000).toFixed(0);
      this.log(
        `${this.who}: still no Temporal server at ${this.address} after ${seconds} s: ${reasonOf(error)}; retrying`,
      );
    }
  }
}

/**
 * Asks the server every `intervalMs` whether it is there (a cheap system-info call) and tells the
 * link; for processes that make no periodic call of their own. Returns the function that stops it.
 */
export function watchServer(probe: () => Promise<unknown>, link: ServerLink, intervalMs = 5000): () => void {
  let inFlight = false;
  const timer = setInterval(() => {
    if (inFlight) return;
    inFlight = true;
    probe()
      .then(
        () => link.reached(),
        (error: unknown) => {
          if (isConnectionError(error)) link.failed(error);
        },
      )
      .finally(() => (inFlight = false));
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
