import { z } from 'zod';
import { storeCheckpointProblem } from './checkpoints.js';
import { DEFAULT_MAX_REPLACEMENTS, DEFAULT_SETUP_TIMEOUT_SECONDS, DEFAULT_TIME_BUDGET_SECONDS } from './limits.js';
import { ENV_NAME_PATTERN, ENV_NAME_TEXT } from './environment.js';
import { MIN_SECRET_LENGTH, variableValueBytes } from './redact.js';
import { parseDatasetRef } from './dataset-refs.js';
import { DATASET_NAME_TEXT } from './datasets.js';
import {
  formatBytes,
  gpusOf,
  MAX_COMMAND_BYTES,
  MAX_COMMAND_WORDS,
  MAX_DATASET_REFS,
  MAX_DESCRIPTION_CHARS,
  MAX_ENV_BYTES,
  MAX_ENV_VALUE_BYTES,
  MAX_ENV_VARIABLES,
  MAX_HYPOTHESIS_CHARS,
  MAX_IDEMPOTENCY_KEY_CHARS,
  MAX_RUNTIME_TAG_CHARS,
  MAX_RUNTIME_TAGS,
  MAX_GPUS_PER_RUN,
  GPUS_ALL,
  TAG_PATTERN,
  TAG_PATTERN_TEXT,
  TAG_RULE,
  tagProblem,
  utf8Bytes,
} from './bounds.js';

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

export { GPUS_ALL, gpusOf, TAG_PATTERN, TAG_PATTERN_TEXT, TAG_RULE, tagProblem };
/** Metric names: the keys a `---` block can carry (see parseSummaryBlock). */
export const METRIC_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/;
export const METRIC_NAME_TEXT =
  'a metric name as the --- block prints it: a letter or "_", then letters, digits, "_", "." or "-"';

const tagName = z.string().regex(TAG_PATTERN, TAG_RULE);
export const MetricNameSchema = z.string().regex(METRIC_NAME_PATTERN, METRIC_NAME_TEXT);

/** A submission's queue priority (higher is placed first); the CLI, the MCP server and the client read it here. */
export const PRIORITY_RANGE = { min: -1000, max: 1000 } as const;
export const PrioritySchema = z.number().int().min(PRIORITY_RANGE.min).max(PRIORITY_RANGE.max);

/** The priority a submission carries (0 when none is given); RequestValidationError outside PRIORITY_RANGE. */
export function parsePriority(priority: number | undefined): number {
  const result = PrioritySchema.safeParse(priority ?? 0);
  if (!result.success)
    throw new RequestValidationError(result.error.issues.map((issue) => `priority: ${issue.message}`));
  return result.data;
}

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

/** `NAME@V`: a reference with "@" is a dataset version, never a path, so a bad version is named as one. */
const DATASET_VERSION_TEXT = `a dataset version is NAME@latest or NAME@V, V a version number from 1 (NAME: ${DATASET_NAME_TEXT})`;
const datasetRef = confinedPath('a dataset reference').superRefine((ref, ctx) => {
  if (ref.includes('@') && parseDatasetRef(ref).kind !== 'version')
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(ref)}: ${DATASET_VERSION_TEXT}` });
});

/** Schemes of a git URL a worker may fetch (`expctl+http(s)` is the fleet remote). */
const REPO_SCHEMES = ['https', 'http', 'ssh', 'git', 'file', 'expctl+http', 'expctl+https'];
export const MAX_REPO_CHARS = 4096;

/**
 * Why `repo` cannot be a repository a worker fetches, or null. It is a path on this host or a git
 * URL (`https://`, `ssh://`, `git://`, `file://`, or scp-like `user@host:path`). Refused: other
 * schemes and git's `ext::` transports (they run commands), a host or path read as an option
 * (leading "-"), whitespace and control characters.
 */
export function repoProblem(repo: string): string | null {
  if (repo.length === 0) return 'expected a repository path or git URL';
  if (repo.length > MAX_REPO_CHARS) return `at most ${MAX_REPO_CHARS} characters`;
  if (/[\s\u0000-\u001f\u007f]/.test(repo)) return 'must not contain whitespace or control characters';
  if (repo.startsWith('-')) return 'must not start with "-" (git would read it as an option)';
  if (repo.includes('::')) return "git's transport helpers (NAME::ADDRESS) are refused: they run commands";
  const url = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/]*)/.exec(repo);
  if (url) {
    if (!REPO_SCHEMES.includes(url[1]!.toLowerCase()))
      return `the URL scheme ${url[1]} is not one workers fetch: use ${REPO_SCHEMES.map((s) => `${s}://`).join(', ')}`;
    const host = url[2]!.replace(/^[^@]*@/, '');
    if (url[1]!.toLowerCase() !== 'file' && host === '') return 'the URL names no host';
    if (host.startsWith('-')) return 'the host must not start with "-" (git would read it as an option)';
    return null;
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(repo) && !/^[\w.-]+@[\w.-]+:/.test(repo) && !repo.startsWith('/'))
    return `${JSON.stringify(repo.split(':')[0])} is not a URL scheme workers fetch: use ${REPO_SCHEMES.map((s) => `${s}://`).join(', ')} or user@host:path`;
  return null;
}

/** A NUL byte cannot be passed to a process (its argv and environment are C strings): refused, never cut. */
const NUL_TEXT = 'must not contain a NUL byte (a process cannot receive one)';

/**
 * An argv array (the training command, `--setup`): words not empty and without NUL, and within
 * MAX_COMMAND_WORDS and MAX_COMMAND_BYTES.
 */
const argv = (emptyText: string) =>
  z
    .array(
      z
        .string()
        .min(1, 'an empty word')
        .refine((word) => !word.includes('\0'), NUL_TEXT),
    )
    .min(1, emptyText)
    .max(MAX_COMMAND_WORDS, `at most ${MAX_COMMAND_WORDS} words`)
    .superRefine((words, ctx) => {
      const bytes = utf8Bytes(words.join(' '));
      if (bytes > MAX_COMMAND_BYTES)
        ctx.addIssue({
          code: 'custom',
          message: `${formatBytes(bytes)} long; at most ${formatBytes(MAX_COMMAND_BYTES)}`,
        });
    });

/**
 * Variables for the training process (`--env`, `--secret`): names as ENV_NAME_PATTERN says (each
 * problem names the variable and the rule), values without NUL and within MAX_ENV_VALUE_BYTES.
 * Secret values are never quoted.
 */
const variables = (value: z.ZodString) =>
  z
    .record(
      z.string(),
      value.refine((v) => !v.includes('\0'), NUL_TEXT),
    )
    .superRefine((vars, ctx) => {
      const names = Object.keys(vars);
      if (names.length > MAX_ENV_VARIABLES)
        ctx.addIssue({ code: 'custom', message: `${names.length} variables; at most ${MAX_ENV_VARIABLES}` });
      for (const name of names) {
        if (!ENV_NAME_PATTERN.test(name))
          ctx.addIssue({ code: 'custom', path: [name], message: `the name must be ${ENV_NAME_TEXT}` });
        const bytes = variableValueBytes(vars[name]!);
        if (bytes > MAX_ENV_VALUE_BYTES)
          ctx.addIssue({
            code: 'custom',
            path: [name],
            message: `the value is ${formatBytes(bytes)}; a value has at most ${formatBytes(MAX_ENV_VALUE_BYTES)}`,
          });
      }
    });

export const RequirementsSchema = z.strictObject({
  acceleratorClass: z
    .string()
    .regex(/^[a-z0-9]+$/, 'an accelerator class such as h100, a100, l4, cpu or any')
    .default('any'),
  gpuMemoryMb: z.number().int().nonnegative().default(0),
  runtimeTags: z
    .array(z.string().min(1).max(MAX_RUNTIME_TAG_CHARS))
    .max(MAX_RUNTIME_TAGS, `at most ${MAX_RUNTIME_TAGS} runtime tags`)
    .default([]),
  /**
   * How many GPUs of one class on one host the run holds at once (a gang lease), or `all`: every
   * capable GPU of the host it is placed on. Absent means 1 (almost every run), so a 1-GPU
   * request and its record read as before gang leases.
   */
  gpus: z
    .union([
      z.number().int().min(1, 'at least 1 GPU').max(MAX_GPUS_PER_RUN, `at most ${MAX_GPUS_PER_RUN} GPUs`),
      z.literal(GPUS_ALL),
    ])
    .optional(),
});

export const ExperimentRequestSchema = z
  .strictObject({
    tag: tagName,
    hypothesis: z
      .string()
      .trim()
      .min(1, 'say what the experiment tests')
      .max(MAX_HYPOTHESIS_CHARS, `at most ${MAX_HYPOTHESIS_CHARS} characters`),
    category: z.enum(CATEGORIES),
    description: z.string().max(MAX_DESCRIPTION_CHARS, `at most ${MAX_DESCRIPTION_CHARS} characters`).default(''),
    /** Absent: autoresearch's command (the CLI's help and the MCP tool say so). */
    command: argv('the command is an argv array with at least the program').default(['uv', 'run', 'train.py']),
    /** Environment setup run in the worktree before training (cached per lockfile); `uv sync` is implied for `uv run` commands. */
    setup: argv('expected a command').optional(),
    setupTimeoutSeconds: z
      .number()
      .positive()
      .max(24 * 3600)
      .default(DEFAULT_SETUP_TIMEOUT_SECONDS),
    /** A local repository path (workers on the same host) or a git URL a remote worker can fetch. */
    repo: z.string().superRefine((repo, ctx) => {
      const problem = repoProblem(repo);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    /** Full commit SHA, resolved by the client from what the caller named. */
    commit: z.string().regex(/^[0-9a-f]{40}$/, 'a full 40-character commit SHA'),
    /** Config file path inside the repository at that commit; parsed during validation. */
    configPath: confinedPath('the config path').optional(),
    /**
     * Dataset references: `NAME@latest` or `NAME@V` (a version whose gates passed, pinned when the
     * run starts; see dataset-refs.ts), or a path under the worker's datasets root.
     */
    datasets: z.array(datasetRef).max(MAX_DATASET_REFS, `at most ${MAX_DATASET_REFS} datasets`).default([]),
    /**
     * `--wait-for-data`: how long the run may wait (state waiting_for_data) for a passed version of a
     * dataset it names as `NAME@latest`; absent, a dataset without one ends the run data_unavailable.
     */
    waitForDataSeconds: z
      .number()
      .positive()
      .max(30 * 24 * 3600)
      .optional(),
    /**
     * A checkpoint in the commit's tree or under the worker's checkpoints root, or `store:ID`:
     * experiment ID's latest checkpoint in the fleet store.
     */
    checkpoint: confinedPath('the checkpoint path')
      .superRefine((reference, ctx) => {
        const problem = storeCheckpointProblem(reference);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
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
    idempotencyKey: z
      .string()
      .min(1)
      .max(MAX_IDEMPOTENCY_KEY_CHARS, `at most ${MAX_IDEMPOTENCY_KEY_CHARS} characters`)
      .optional(),
    /** How often a run whose worker was lost is placed again before it ends as worker_lost. */
    maxReplacements: z.number().int().min(0).max(10).default(DEFAULT_MAX_REPLACEMENTS),
    env: variables(z.string()).default({}),
    /**
     * `--secret NAME`: values for the training process only (as variable NAME). The request carries
     * them to the worker; everything shown or stored has the name and, in the record, a keyed digest
     * (see publicRequest in redact.ts). Messages about them never quote the value.
     */
    secrets: variables(
      z
        .string()
        .min(
          MIN_SECRET_LENGTH,
          `a secret must be at least ${MIN_SECRET_LENGTH} characters: a shorter one cannot be told apart in logs and metrics`,
        ),
    ).default({}),
  })
  .refine((r) => r.timeoutSeconds === undefined || r.timeoutSeconds >= r.timeBudgetSeconds, {
    path: ['timeoutSeconds'],
    message: 'the kill limit (--timeout) must be at least the training budget (--time-budget)',
  })
  .superRefine((r, ctx) => {
    const vars = [...Object.entries(r.env), ...Object.entries(r.secrets)];
    const bytes = vars.reduce((sum, [name, value]) => sum + utf8Bytes(name) + variableValueBytes(value) + 2, 0);
    if (bytes > MAX_ENV_BYTES)
      ctx.addIssue({
        code: 'custom',
        path: ['env'],
        message: `the variables (--env and --secret) take ${formatBytes(bytes)}; at most ${formatBytes(MAX_ENV_BYTES)} together`,
      });
    for (const name of Object.keys(r.secrets).filter((name) => name in r.env))
      ctx.addIssue({
        code: 'custom',
        path: ['secrets', name],
        message: `${name} is given both as --env and as --secret; give it once`,
      });
  });

export type ExperimentRequest = z.output<typeof ExperimentRequestSchema>;
export type ExperimentRequestInput = z.input<typeof ExperimentRequestSchema>;
/** Requirements as held: `gpus` is absent for a 1-GPU run (read it with gpusOf). */
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
