import { secretValues } from '../domain/redact.js';

/**
 * A run's secret values, in this worker process's memory only, while it watches the run: they scrub
 * what expctl reads back of it (log pages, its outcome). They are never written to the host's disk:
 * the supervisor gets them on its stdin and scrubs the raw log as it writes it. A worker that adopts
 * a run after a restart does not have them (see `adoptedWithoutSecretsNote`).
 */
const held = new Map<string, readonly string[]>();

export function holdRunSecrets(experimentId: string, values: readonly string[]): void {
  if (values.length > 0) held.set(experimentId, values);
  else held.delete(experimentId);
}

/** Once the run has ended: its log and outcome are scrubbed already. */
export function forgetRunSecrets(experimentId: string): void {
  held.delete(experimentId);
}

/** The values this process holds for the run (none for a run it did not start). */
export function heldRunSecrets(experimentId: string): readonly string[] {
  return held.get(experimentId) ?? [];
}

/** What the log of an adopted run says: this worker cannot scrub it by value; its supervisor still does. */
export const ADOPTED_WITHOUT_SECRETS_NOTE =
  "this worker adopted the run without its secret values (they are kept in memory only, and the worker that started it is gone): it cannot scrub this run's log by value; the supervisor still scrubs everything it writes";

/** Secret values of the worker's own environment: the run's processes inherit them, so they are scrubbed too. */
export function workerSecretValues(): string[] {
  return secretValues(process.env);
}
