import fs from 'node:fs/promises';
import { secretValues } from '../domain/redact.js';

/**
 * A run's secret values kept on its host (`runs/<id>/secrets.json`, mode 0600, readable by the
 * worker's user only), so that whatever expctl reads back later is scrubbed of them: `expctl logs`
 * pages, and the outcome of a run a restarted worker adopts. The raw log beside it holds whatever
 * the script printed, secrets included, as written; nothing leaves the host unscrubbed.
 */
export async function writeRunSecrets(file: string, values: readonly string[]): Promise<void> {
  const partial = `${file}.partial`;
  await fs.rm(partial, { force: true });
  await fs.writeFile(partial, JSON.stringify(values), { mode: 0o600 });
  await fs.rename(partial, file);
}

/** The run's secret values (none when the file is absent: a run started before it existed). */
export async function readRunSecrets(file: string): Promise<string[]> {
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return [];
  const values: unknown = JSON.parse(text);
  return Array.isArray(values) ? values.filter((v): v is string => typeof v === 'string') : [];
}

/** Secret values of the worker's own environment: the run's processes inherit them, so they are scrubbed too. */
export function workerSecretValues(): string[] {
  return secretValues(process.env);
}
