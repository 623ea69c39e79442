import { GUARD_OPS, type GuardRule } from './decision.js';
import { METRIC_NAME_PATTERN, METRIC_NAME_TEXT } from './request.js';

/** Parsing of a tag's keep-rule options as the operator types them. Pure; the CLI and tests use it. */

/** A plain decimal number (`1.5`, `-0.002`, `1e-3`); hex, blanks, `Infinity` and `1.5abc` are refused. */
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

export function parseDecimal(text: string, what: string): number {
  const trimmed = text.trim();
  if (!DECIMAL.test(trimmed)) throw new Error(`${what} must be a decimal number, got "${text}"`);
  return Number(trimmed);
}

/** METRIC OP VALUE; two-character operators first, so `>=` is never read as `>` and `=...`. */
const GUARD = /^\s*([^\s=!<>]+)\s*(==|!=|>=|<=|>|<)\s*(.+?)\s*$/;

/**
 * Parses a guard such as `val_pass==true`, `sharpe >= 1.5` or `mode != debug`: a metric of the
 * `---` block, an operator (== != >= <= > <) and a number, true/false or text. Ordering
 * operators need a number. Throws with a message that says what is wrong.
 */
export function parseGuard(text: string): GuardRule {
  const match = GUARD.exec(text);
  if (!match)
    throw new Error(
      `guard "${text}" must be METRIC OP VALUE with OP one of ${GUARD_OPS.join(' ')}, e.g. val_pass==true or sharpe>=1.5`,
    );
  const [, metric, op, raw] = match as unknown as [string, string, GuardRule['op'], string];
  if (!METRIC_NAME_PATTERN.test(metric)) throw new Error(`guard "${text}": "${metric}" is not ${METRIC_NAME_TEXT}`);
  const numeric = DECIMAL.test(raw);
  const lowered = raw.toLowerCase();
  const value: number | string = numeric ? Number(raw) : lowered === 'true' || lowered === 'false' ? lowered : raw;
  if (typeof value === 'string' && op !== '==' && op !== '!=')
    throw new Error(`guard "${text}": ${op} compares numbers, and "${raw}" is not a number`);
  return { metric, op, value };
}
