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

/**
 * An experiment's result, or, after `timeoutMs`, an error that carries its state and timeline (a
 * hang then says where the run stood, rather than only that the test ran out of time).
 */
export async function resultWithin<T>(
  handle: { result(): Promise<T>; query(query: typeof experimentStateQuery): Promise<ExperimentSnapshot> },
  timeoutMs: number,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void handle
        .query(experimentStateQuery)
        .then(
          (state) =>
            `status ${state.status}, attempts ${state.attempts}; timeline:\n${state.timeline
              .map((entry) => `  ${entry.at} ${entry.status}${entry.note ? ` (${entry.note})` : ''}`)
              .join('\n')}`,
          (error: Error) => `its state could not be read: ${error.message}`,
        )
        .then((where) => reject(new Error(`no result within ${timeoutMs / 1000} s: ${where}`)));
    }, timeoutMs);
  });
  try {
    return await Promise.race([handle.result(), expired]);
  } finally {
    clearTimeout(timer);
  }
}
