import { z } from 'zod';
import { DEFAULT_MAX_REPLACEMENTS, DEFAULT_SETUP_TIMEOUT_SECONDS, DEFAULT_TIME_BUDGET_SECONDS } from './limits.js';
import { ENV_NAME_PATTERN, ENV_NAME_TEXT } from './environment.js';
import { MIN_SECRET_LENGTH } from './redact.js';

/**
 * The experiment request: one schema for the CLI, the client API and the validation activity.
 * Workflow code imports only its types (zod stays out of the workflow sandbox).
 */

export const CATEGORIES = [
  'architecture',
  'optimizer',
  'hyperparams',
  'activation',
  'attention',
  'embedding',
  'normalization',
  'regularization',
  'scheduling',
  'initialization',
  'simplification',
  'combination',
  'ablation',
  'other',
] as const;

/** Tag names: also part of workflow IDs and file names. */
export const TAG_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const TAG_PATTERN_TEXT = 'letters, digits, "_", "." or "-" (at most 64, starting with a letter or digit)';
/** Metric names: the keys a `---` block can carry (see parseSummaryBlock). */
export const METRIC_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
export const METRIC_NAME_TEXT =
  'a metric name as the --- block prints it: a letter or "_", then letters, digits, "_", "." or "-"';

const tagName = z.string().regex(TAG_PATTERN, TAG_PATTERN_TEXT);
const envName = z.string().regex(ENV_NAME_PATTERN, ENV_NAME_TEXT);
export const MetricNameSchema = z.string().regex(METRIC_NAME_PATTERN, METRIC_NAME_TEXT);

/**
 * A path relative to a root the worker controls (datasets root, checkpoints root, the repository):
 * never absolute, never stepping out with "..". The worker re-checks the resolved path.
 */
const confinedPath = (what: string) =>
  z
    .string()
    .min(1)
    .max(1000)
    .refine(
      (p) => !p.startsWith('/') && !p.startsWith('~'),
      `${what} must be relative to its root on the worker, not an absolute path`,
    )
    .refine(
      (p) => !p.split(/[\\/]/).includes('..'),
      `${what} must not contain ".." (it is confined to its root on the worker)`,
    )
    .refine((p) => !/[\u0000-\u001f\u007f]/.test(p), `${what} must not contain control characters`);

export const RequirementsSchema = z.strictObject({
  acceleratorClass: z
    .string()
    .regex(/^[a-z0-9]+$/, 'an accelerator class such as h100, a100, l4, cpu or any')
    .default('any'),
  gpuMemoryMb: z.number().int().nonnegative().default(0),
  runtimeTags: z.array(z.string().min(1)).default([]),
});

export const ExperimentRequestSchema = z
  .strictObject({
    tag: tagName,
    hypothesis: z.string().trim().min(1, 'say what the experiment tests').max(2000),
    category: z.enum(CATEGORIES),
    description: z.string().max(2000).default(''),
    command: z
      .array(z.string().min(1))
      .min(1, 'the command is an argv array with at least the program')
      .default(['uv', 'run', 'train.py']),
    /** Environment setup run in the worktree before training (cached per lockfile); `uv sync` is implied for `uv run` commands. */
    setup: z.array(z.string().min(1)).min(1).optional(),
    setupTimeoutSeconds: z
      .number()
      .positive()
      .max(24 * 3600)
      .default(DEFAULT_SETUP_TIMEOUT_SECONDS),
    /** A local repository path (workers on the same host) or a git URL a remote worker can fetch. */
    repo: z.string().min(1),
    /** Full commit SHA, resolved by the client from what the caller named. */
    commit: z.string().regex(/^[0-9a-f]{40}$/, 'a full 40-character commit SHA'),
    /** Config file path inside the repository at that commit; parsed during validation. */
    configPath: confinedPath('the config path').optional(),
    /**
     * Dataset references: `NAME@latest` or `NAME@V` (a version whose gates passed, pinned when the
     * run starts; see dataset-refs.ts), or a path under the worker's datasets root.
     */
    datasets: z.array(confinedPath('a dataset reference')).default([]),
    /**
     * `--wait-for-data`: how long the run may wait (state waiting_for_data) for a passed version of a
     * dataset it names as `NAME@latest`; absent, a dataset without one ends the run data_unavailable.
     */
    waitForDataSeconds: z
      .number()
      .positive()
      .max(30 * 24 * 3600)
      .optional(),
    /** A checkpoint in the commit's tree or under the worker's checkpoints root. */
    checkpoint: confinedPath('the checkpoint path').optional(),
    requirements: RequirementsSchema.default({ acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] }),
    /** Training budget the script enforces itself (passed as EXPCTL_TIME_BUDGET); compared with its reported training_seconds. */
    timeBudgetSeconds: z
      .number()
      .positive()
      .max(7 * 24 * 3600)
      .default(DEFAULT_TIME_BUDGET_SECONDS),
    /** Kill limit, counted from the training process's start; default KILL_LIMIT_FACTOR x the budget (see limits.ts). */
    timeoutSeconds: z
      .number()
      .positive()
      .max(14 * 24 * 3600)
      .optional(),
    /** The metric that decides. Absent: the tag's. Present and different from the tag's policy: refused. */
    metric: z
      .strictObject({ name: MetricNameSchema, direction: z.enum(['minimize', 'maximize']).optional() })
      .optional(),
    /** program.md: removing something and getting an equal result is a win; a tie is kept. */
    simplification: z.boolean().default(false),
    idempotencyKey: z.string().min(1).max(200).optional(),
    /** How often a run whose worker was lost is placed again before it ends as worker_lost. */
    maxReplacements: z.number().int().min(0).max(10).default(DEFAULT_MAX_REPLACEMENTS),
    env: z.record(envName, z.string()).default({}),
    /**
     * `--secret NAME`: values for the training process only (as variable NAME). The request carries
     * them to the worker; everything shown or stored has the name and, in the record, a keyed digest
     * (see publicRequest in redact.ts). Messages about them never quote the value.
     */
    secrets: z
      .record(
        envName,
        z
          .string()
          .min(
            MIN_SECRET_LENGTH,
            `a secret must be at least ${MIN_SECRET_LENGTH} characters: a shorter one cannot be told apart in logs and metrics`,
          ),
      )
      .default({}),
  })
  .refine((r) => r.timeoutSeconds === undefined || r.timeoutSeconds >= r.timeBudgetSeconds, {
    path: ['timeoutSeconds'],
    message: 'the kill limit (--timeout) must be at least the training budget (--time-budget)',
  })
  .superRefine((r, ctx) => {
    for (const name of Object.keys(r.secrets).filter((name) => name in r.env))
      ctx.addIssue({
        code: 'custom',
        path: ['secrets', name],
        message: `${name} is given both as --env and as --secret; give it once`,
      });
  });

export type ExperimentRequest = z.output<typeof ExperimentRequestSchema>;
export type ExperimentRequestInput = z.input<typeof ExperimentRequestSchema>;
export type Requirements = z.output<typeof RequirementsSchema>;
export type Category = (typeof CATEGORIES)[number];

/** A malformed request: every problem with the path of its field and what was expected. */
export class RequestValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid experiment request: ${problems.join('; ')}`);
  }
}

export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : '(request)'}: ${issue.message}`);
}

export function parseExperimentRequest(input: unknown): ExperimentRequest {
  const result = ExperimentRequestSchema.safeParse(input);
  if (!result.success) throw new RequestValidationError(formatIssues(result.error));
  return result.data;
}
