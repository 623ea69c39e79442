/**
 * A payload the codec refused (not encrypted, another fleet's key, tampered), as workflow code sees
 * it: the workers' codec hands a workflow this marked placeholder instead of failing its task, so a
 * stray signal, update or start input is dropped by the workflow rather than stalling it for ever.
 * Pure module: safe to import from workflow code.
 */

/** The one key of a placeholder object; nothing expctl sends has it. */
export const REFUSED_PAYLOAD_KEY = '__expctlRefusedPayload';

/** Failure type of a message or start input dropped because its payload could not be decoded. */
export const PAYLOAD_REFUSED = 'payload_refused';

export interface RefusedPayload {
  /** The codec's reason code: payload_not_encrypted, unknown_key or payload_tampered. */
  reason: string;
  /** The codec's message (it names no secret: only encodings and key ids). */
  message: string;
}

export function refusedPayloadPlaceholder(refused: RefusedPayload): { [REFUSED_PAYLOAD_KEY]: RefusedPayload } {
  return { [REFUSED_PAYLOAD_KEY]: refused };
}

/** The refusal a value carries, if it is a placeholder. */
export function refusalOf(value: unknown): RefusedPayload | undefined {
  if (typeof value !== 'object' || value === null || !(REFUSED_PAYLOAD_KEY in value)) return undefined;
  const refused = (value as Record<string, unknown>)[REFUSED_PAYLOAD_KEY];
  if (typeof refused !== 'object' || refused === null) return undefined;
  const { reason, message } = refused as Record<string, unknown>;
  return { reason: String(reason), message: String(message) };
}

/** The first refusal among a message's arguments. */
export function refusalAmong(args: readonly unknown[]): RefusedPayload | undefined {
  for (const arg of args) {
    const refused = refusalOf(arg);
    if (refused) return refused;
  }
  return undefined;
}
