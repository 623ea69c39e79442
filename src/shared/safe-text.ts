/** Untrusted text made safe to print: shared by the CLI's output and every message that quotes a value. */

/**
 * Characters that can steer a terminal or reorder what it shows: C0 controls and DEL (ANSI escapes
 * start with ESC), C1 controls, bidi embeddings/overrides/isolates and marks, line/paragraph separators.
 */
const UNSAFE_SINGLE_LINE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** The same, but newline and tab are kept: for fields that are meant to span lines (logs, patches). */
const UNSAFE_MULTI_LINE =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** What JSON.stringify leaves raw inside strings (it escapes C0 itself; structural newlines stay). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function escapeChar(char: string): string {
  const code = char.charCodeAt(0);
  if (char === '\n') return '\\n';
  if (char === '\t') return '\\t';
  if (char === '\r') return '\\r';
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * Untrusted text (descriptions, hypotheses, reasons, log lines) made safe to print on a terminal:
 * every control, C1 and bidi character is shown as a visible escape (`\x1b`, `\u202e`).
 * `multiline` keeps newlines and tabs for fields that are meant to span lines.
 */
export function safeText(value: unknown, options: { multiline?: boolean } = {}): string {
  const text = typeof value === 'string' ? value : String(value);
  return text.replace(options.multiline ? UNSAFE_MULTI_LINE : UNSAFE_SINGLE_LINE, escapeChar);
}

/**
 * JSON text in which no character can steer a terminal: JSON.stringify already escapes C0, and
 * this also writes DEL, C1, bidi and line-separator characters as \uXXXX. Such characters can only
 * occur inside JSON strings, so the result is the same value.
 */
export function safeJson(value: unknown, indent = 2): string {
  const text = JSON.stringify(value, null, indent) ?? 'null';
  return text.replace(UNSAFE_IN_JSON, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
