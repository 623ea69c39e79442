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
  return `${state}\npending activities:\n${pending}`;
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
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void Promise.all([whereItStands(handle), onExpiry?.() ?? Promise.resolve('')]).then(([where, extra]) =>
        reject(new Error(`not settled within ${timeoutMs / 1000} s: ${where}${extra ? `\n${extra}` : ''}`)),
      );
    }, timeoutMs);
  });
  try {
    return await Promise.race([work, expired]);
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
