import crypto from 'node:crypto';
import { publicRequest } from '../domain/redact.js';
import type { ExperimentRequest } from '../domain/request.js';
import { canonicalJson } from '../security/content-digest.js';

/**
 * A request's fingerprint, so an idempotency key reused with a different request can be told from
 * a plain resubmission. It travels in the workflow memo, which the Web UI shows: only digests keyed
 * with the experiment ID are stored, never values. That key is no secret (the ID is shown beside
 * it), so a digest of a guessable value could be guessed back: secret values (`--secret`, and
 * secret-looking `--env` values) are not part of the fingerprint at all, only their names.
 */
export interface RequestFingerprint {
  /** Digest of the whole request, priority included. */
  digest: string;
  /** One digest per top-level field, and per environment variable as `env.NAME`. */
  fields: Record<string, string>;
}

export function fingerprintRequest(
  experimentId: string,
  request: ExperimentRequest,
  priority: number,
): RequestFingerprint {
  const digestOf = (text: string) => crypto.createHmac('sha256', experimentId).update(text).digest('hex').slice(0, 32);
  request = publicRequest(request);
  const { env, ...rest } = request;
  const fields: Record<string, string> = {};
  for (const [key, value] of Object.entries({ ...rest, priority })) {
    if (value !== undefined) fields[key] = digestOf(canonicalJson(value));
  }
  for (const [name, value] of Object.entries(env)) fields[`env.${name}`] = digestOf(canonicalJson(value));
  const digest = digestOf(canonicalJson({ ...request, priority }));
  return { digest, fields };
}

/** The fields whose digests differ (present in one and not the other included), sorted. */
export function differingFields(a: Record<string, string>, b: Record<string, string>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((key) => a[key] !== b[key]).sort();
}
