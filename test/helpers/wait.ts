import { ENCRYPTED_ENCODING } from '../../src/security/codec.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import type { ExperimentSnapshot } from '../../src/workflows/experiment-state.js';

/** Polls until `probe` returns something other than undefined (errors count as not yet). */
export async function eventually<T>(
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Polls until `predicate` holds. */
export async function waitFor(predicate: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  await eventually(async () => ((await predicate()) ? true : undefined), timeoutMs);
}

type ExperimentLike = {
  query(query: typeof experimentStateQuery): Promise<ExperimentSnapshot>;
  describe?(): Promise<{ raw: { pendingActivities?: PendingActivity[] | null } }>;
  fetchHistory?(): Promise<{ events?: unknown[] | null }>;
};
type PendingActivity = {
  activityType?: { name?: string | null } | null;
  state?: unknown;
  attempt?: number | null;
  lastFailure?: { message?: string | null } | null;
  lastWorkerIdentity?: string | null;
};

/** Where an experiment stands: its status, timeline and the activities the server still has pending. */
export async function whereItStands(handle: ExperimentLike): Promise<string> {
  const state = await handle.query(experimentStateQuery).then(
    (s) =>
      `status ${s.status}, attempts ${s.attempts}; timeline:\n${s.timeline
        .map((entry) => `  ${entry.at} ${entry.status}${entry.note ? ` (${entry.note})` : ''}`)
        .join('\n')}`,
    (error: Error) => `its state could not be read: ${error.message}`,
  );
  const pending = handle.describe
    ? await handle.describe().then(
        (d) =>
          (d.raw.pendingActivities ?? [])
            .map(
              (a) =>
                `  ${a.activityType?.name ?? '?'} state ${String(a.state)} attempt ${a.attempt ?? '?'}` +
                ` worker ${a.lastWorkerIdentity ?? '-'}${a.lastFailure?.message ? ` last failure: ${a.lastFailure.message}` : ''}`,
            )
            .join('\n') || '  (none)',
        (error: Error) => `  could not be described: ${error.message}`,
      )
    : '  (not asked)';
  const plain = handle.fetchHistory
    ? await handle.fetchHistory().then(
        (history) => unencryptedPayloads(history.events ?? []).join('\n') || '  (none)',
        (error: Error) => `  could not be read: ${error.message}`,
      )
    : '  (not asked)';
  return `${state}\npending activities:\n${pending}\nhistory events holding payloads that are not encrypted:\n${plain}`;
}

/**
 * Events whose payloads are not encrypted (search attributes, headers and the SDK's markers excepted,
 * which are never encrypted): a workflow stuck on a payload its codec refuses says where that payload is.
 */
export function unencryptedPayloads(events: unknown[]): string[] {
  const found: string[] = [];
  const visit = (value: unknown, where: string, event: { eventId?: unknown; eventType?: unknown }) => {
    if (value === null || typeof value !== 'object') return;
    if (where.endsWith('.searchAttributes') || where.endsWith('.header') || where.includes('markerRecorded')) return;
    const record = value as Record<string, unknown>;
    const metadata = record['metadata'] as Record<string, Uint8Array> | undefined;
    if (metadata && typeof metadata === 'object' && 'encoding' in metadata && 'data' in record) {
      const encoding = Buffer.from(metadata['encoding']!).toString('utf8');
      if (encoding !== ENCRYPTED_ENCODING)
        found.push(`  event ${String(event.eventId)} ${String(event.eventType)} at ${where}: ${encoding}`);
      return;
    }
    for (const [key, child] of Object.entries(record)) visit(child, `${where}.${key}`, event);
  };
  for (const event of events) visit(event, '', event as { eventId?: unknown; eventType?: unknown });
  return found;
}

/**
 * Waits for `work`; after `timeoutMs` fails with where the experiment stands (a hang then says
 * where the run stood, rather than only that the test ran out of time).
 */
export async function settledWithin<T>(
  work: Promise<T>,
  handle: ExperimentLike,
  timeoutMs: number,
  onExpiry?: () => Promise<string>,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let expiring = false;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expiring = true;
      void Promise.all([whereItStands(handle), onExpiry?.() ?? Promise.resolve('')]).then(([where, extra]) =>
        reject(new Error(`not settled within ${timeoutMs / 1000} s: ${where}${extra ? `\n${extra}` : ''}`)),
      );
    }, timeoutMs);
  });
  try {
    const settled = await Promise.race([work, expired]);
    // What onExpiry does (kill a waiting CLI) may settle the work first: the report still wins.
    if (expiring) await expired;
    return settled;
  } finally {
    clearTimeout(timer);
  }
}

/** An experiment's result, or, after `timeoutMs`, an error that says where it stands. */
export async function resultWithin<T>(
  handle: ExperimentLike & { result(): Promise<T> },
  timeoutMs: number,
): Promise<T> {
  return settledWithin(handle.result(), handle, timeoutMs);
}
