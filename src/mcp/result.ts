import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { PERMISSION_DENIED, PERMISSION_DENIED_EXIT_CODE } from '../domain/authorization.js';
import { EXIT_CODES } from '../domain/exit-codes.js';

/**
 * A finished `expctl` process turned into an MCP tool result. Pure, so a unit test can check it.
 * The JSON is the CLI's, unchanged: the exit code travels in `_meta`, never inside it.
 */

export interface CliOutcome {
  stdout: string;
  stderr: string;
  /** Undefined when the process could not be started or was killed. */
  exitCode: number | undefined;
  /** Why it could not be started or was stopped (execa's short message), when so. */
  failure?: string;
}

/** What the CLI printed on stdout, parsed, or undefined when it printed no JSON. */
export function parsedJson(stdout: string): unknown {
  const text = stdout.trim();
  if (!text.startsWith('{') && !text.startsWith('[')) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** A tool error: no JSON came back, so the caller reads why from the CLI's stderr. */
export function errorResult(outcome: CliOutcome): CallToolResult {
  const why =
    outcome.stderr.trim() ||
    outcome.failure ||
    `expctl exited with code ${outcome.exitCode ?? 'none'} and printed no JSON`;
  return { content: [{ type: 'text', text: why }], isError: true, _meta: { exitCode: outcome.exitCode ?? null } };
}

/**
 * The CLI's JSON as structured content (MCP wants an object there: a JSON array, as `history`
 * prints, is wrapped under `arrayKey`), the same JSON as text. Experiment outcomes such as a
 * refusal (exit 2) or a crash (exit 3) are results, not tool errors; a permission refusal is one.
 */
export function jsonResult(outcome: CliOutcome, arrayKey = 'items'): CallToolResult {
  const json = parsedJson(outcome.stdout);
  if (json === undefined || json === null || typeof json !== 'object') return errorResult(outcome);
  const structured = Array.isArray(json) ? { [arrayKey]: json } : (json as Record<string, unknown>);
  const denied = outcome.exitCode === PERMISSION_DENIED_EXIT_CODE && structured.error === PERMISSION_DENIED;
  return {
    content: [{ type: 'text', text: outcome.stdout.trim() }],
    structuredContent: structured,
    ...(denied ? { isError: true } : {}),
    _meta: { exitCode: outcome.exitCode ?? null },
  };
}

export interface LogPage {
  experiment_id: string;
  /** Byte offset of `text` in the log. */
  offset: number;
  /** Where the next page starts (the log's size when this page reaches its end). */
  next_offset: number;
  /** The log's size in bytes when it was read. */
  size: number;
  /** Whether this page reaches the end of the log as it was. */
  eof: boolean;
  text: string;
}

const isContinuation = (bytes: Uint8Array, at: number) => at < bytes.length && (bytes[at]! & 0xc0) === 0x80;

/**
 * One page of a log, in bytes: from `offset`, or its last `limit` bytes when no offset is given.
 * Page edges move off the middle of a UTF-8 character, so every page decodes whole.
 */
export function logPage(id: string, log: Uint8Array, limit: number, offset?: number): LogPage {
  const size = log.length;
  let start = Math.min(offset ?? Math.max(0, size - limit), size);
  if (offset === undefined) while (isContinuation(log, start)) start++;
  let end = Math.min(start + limit, size);
  while (end > start && isContinuation(log, end)) end--;
  // A limit smaller than the character at `start`: the page holds that one character.
  if (end === start && start < size) for (end = start + 1; isContinuation(log, end); ) end++;
  return {
    experiment_id: id,
    offset: start,
    next_offset: end,
    size,
    eof: end >= size,
    text: Buffer.from(log.subarray(start, end)).toString('utf8'),
  };
}

/** `logs --all` as one page; a log that is not there yet is an empty page with the CLI's note. */
export function logsResult(
  id: string,
  outcome: Omit<CliOutcome, 'stdout'> & { stdout: Uint8Array },
  limit: number,
  offset?: number,
): CallToolResult {
  if (outcome.exitCode !== EXIT_CODES.decided) return errorResult({ ...outcome, stdout: '' });
  const page = logPage(id, outcome.stdout, limit, offset);
  const note = outcome.stderr.trim();
  const structured = { ...page, ...(note ? { note } : {}) };
  return {
    content: [{ type: 'text', text: JSON.stringify(structured) }],
    structuredContent: structured,
    _meta: { exitCode: outcome.exitCode },
  };
}
