import crypto from 'node:crypto';

/**
 * The digest a signature covers, beside signing (credentials.ts) so the client that signs and the
 * activity that verifies compute it from one definition.
 */

/** JSON with object keys sorted, so equal values always give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** What a signed request covers: the content it acts with (a workflow input, a drain, a registration). */
export function contentDigest(content: unknown): string {
  return crypto.createHash('sha256').update(canonicalJson(content)).digest('hex');
}
