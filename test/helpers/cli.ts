import { fileURLToPath } from 'node:url';
import { execa, type Options } from 'execa';

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
