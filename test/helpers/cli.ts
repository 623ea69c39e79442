import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';
import type { z } from 'zod';
import { OUTPUT_SCHEMAS, type OutputName, type ShowOutput } from '../../src/cli/output-schemas.js';

/** The CLI as users and agents run it: a separate node process on bin/expctl.js. */
export const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));

export interface CliEnv {
  TEMPORAL_ADDRESS?: string;
  TEMPORAL_NAMESPACE?: string;
  EXPCTL_CATALOG?: string;
}

/** Runs `expctl ARGS` to completion with stdout and stderr read through pipes; never rejects. */
export function runCli(env: CliEnv, args: string[], options: Options = {}) {
  return execa(process.execPath, [EXPCTL, ...args], { env: { ...env }, reject: false, ...options });
}

/** The keys of the one JSON object `expctl run` prints (BRIEF §4), plus `rule`. */
export const RESULT_KEYS = [
  'experiment_id',
  'tag',
  'status',
  'decision',
  'action',
  'metric_name',
  'metric',
  'best',
  'delta',
  'near_miss',
  'consecutive_crashes',
  'should_abort',
  'reason',
  'gpu',
  'worker',
] as const;

/** What `expctl show ID --json` prints (snake_case, as its schema says). */
export type ShownJson = z.infer<typeof ShowOutput>;

/** Paths of keys that are camelCase (not the output style), outside the user's own config. */
export function camelCaseKeys(value: unknown, at = '$'): string[] {
  if (Array.isArray(value)) return value.flatMap((item, i) => camelCaseKeys(item, `${at}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, inner]) => [
    ...(/^[a-z][a-z0-9]*[A-Z]/.test(key) ? [`${at}.${key}`] : []),
    ...(key === 'resolved_config' ? [] : camelCaseKeys(inner, `${at}.${key}`)),
  ]);
}

/**
 * The one JSON value a command printed, checked against its output's schema and the output
 * style (snake_case at every depth); throws with the command's output when it is not.
 */
export function outputOf(name: OutputName, printed: { stdout: unknown; stderr: unknown; exitCode?: number }) {
  let value: unknown;
  try {
    value = JSON.parse(String(printed.stdout));
  } catch {
    throw new Error(`${name}: not one JSON value (exit ${printed.exitCode}):\n${printed.stdout}\n${printed.stderr}`);
  }
  const checked = OUTPUT_SCHEMAS[name].safeParse(value);
  if (!checked.success) throw new Error(`${name} does not match its schema: ${checked.error.message}`);
  const camel = camelCaseKeys(value);
  if (camel.length > 0) throw new Error(`${name} has camelCase keys: ${camel.join(', ')}`);
  return value as Record<string, unknown>;
}
