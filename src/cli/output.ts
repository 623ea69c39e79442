import { toJsonStyle } from './json-style.js';

/** Output conventions shared by every command: JSON when asked or when stdout is not a terminal. */
import { errorCodeFor, EXIT_CODES } from '../domain/exit-codes.js';
import { safeJson, safeText } from '../shared/safe-text.js';

export function wantsJson(options: { json?: boolean }): boolean {
  return options.json === true || !process.stdout.isTTY;
}

/** Output is made safe in the shared floor (messages below the CLI quote values the same way). */
export { safeJson, safeText };

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
