import { toJsonStyle } from './json-style.js';

/** Output conventions shared by every command: JSON when asked or when stdout is not a terminal. */
import { errorCodeFor, EXIT_CODES } from '../domain/exit-codes.js';

export function wantsJson(options: { json?: boolean }): boolean {
  return options.json === true || !process.stdout.isTTY;
}

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

/** Prints a command's one JSON value, in the output style (snake_case, figures rounded: json-style.ts). */
export function printJson(value: unknown): void {
  process.stdout.write(`${safeJson(toJsonStyle(value))}\n`);
}

/** One line of a JSON-lines stream (`data watch`), in the same style. */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${safeJson(toJsonStyle(value), 0)}\n`);
}

/** A plain aligned table for terminals; every cell is escaped with safeText. */
export function formatTable(headers: string[], rows: (string | number | boolean | null | undefined)[][]): string {
  const cell = (value: string | number | boolean | null | undefined) =>
    value === null || value === undefined ? '-' : safeText(value);
  const cells = [headers.map(cell), ...rows.map((row) => row.map(cell))];
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((text, column) => text.padEnd(widths[column]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/**
 * An error that ends a command: its message on stderr, `{"error": code, "message": …}` on stdout
 * for a JSON reader, and its exit code (exit-codes.ts; 1, the default, is an error of expctl itself).
 */
export class CliError extends Error {
  readonly code: string;
  constructor(
    message: string,
    readonly exitCode: number = EXIT_CODES.internal_error,
    code?: string,
  ) {
    super(message);
    this.code = code ?? errorCodeFor(exitCode);
  }
}

/** Resolves once everything written to `stream` so far has been handed to the OS (or the reader is gone). */
export function drained(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.destroyed || stream.writableEnded) return Promise.resolve();
  return new Promise((resolve) => {
    // Write callbacks run in order: this one runs after every earlier write was flushed.
    stream.write('', () => resolve());
  });
}
