import path from 'node:path';
import { z } from 'zod';
import { TERMINAL_STATUSES } from '../domain/experiment.js';
import {
  CATEGORIES,
  ExperimentRequestSchema,
  MetricNameSchema,
  PrioritySchema,
  RequirementsSchema,
  TAG_PATTERN,
  TAG_RULE,
} from '../domain/request.js';
import { LOG_PAGE_DEFAULT_BYTES, LOG_PAGE_MAX_BYTES } from '../domain/limits.js';
import { MAX_BATCH_SIZE } from '../domain/tournament.js';
import { isRemoteRepo } from '../gpu-worker/git.js';

/**
 * The MCP tools as pure data: each one's input schema and the `expctl` argv it stands for. The CLI
 * stays the one implementation of every command; these schemas only refuse early, with the same
 * rules (taken from the request schema and the domain's constants, never re-typed).
 */

const request = ExperimentRequestSchema.shape;
const requirements = RequirementsSchema.shape;

const tag = z.string().regex(TAG_PATTERN, TAG_RULE);
/** Commits and IDs become positional arguments: a leading "-" would read as a flag. */
const gitRef = z
  .string()
  .regex(/^[\w./@][^\s\u0000-\u001f\u007f]{0,255}$/, 'a commit SHA or git ref (not starting with "-")');
const id = z
  .string()
  .regex(/^[A-Za-z0-9][\w.:@-]{0,299}$/, 'an ID as expctl printed it (experiment, batch, promotion, dataset version)');

/** What `run` and `batch` share: the request's fields, as the CLI flags name them (snake_case). */
const requestFields = {
  tag: tag.describe('campaign tag; the decision compares with its best run'),
  hypothesis: request.hypothesis.describe('what this experiment tests'),
  category: z.enum(CATEGORIES).describe('kind of change'),
  description: request.description.unwrap().optional(),
  command: request.command.unwrap().optional().describe('training command as an argv array (default: uv run train.py)'),
  repo: z
    .string()
    .min(1)
    .optional()
    .describe("local path of the git repository (default: the server's cwd), or a git URL"),
  config: request.configPath.describe('JSON config file, relative to the repository root'),
  datasets: request.datasets.unwrap().optional().describe('NAME@latest, NAME@V, or a path under the datasets root'),
  wait_for_data: z
    .union([z.literal(true), request.waitForDataSeconds.unwrap()])
    .optional()
    .describe('wait for a passed version of a NAME@latest dataset: true (default limit) or seconds'),
  checkpoint: request.checkpoint,
  gpu_class: requirements.acceleratorClass.unwrap().optional().describe('h100, a100, l4, cpu, any, ...'),
  gpu_mem: requirements.gpuMemoryMb.unwrap().optional().describe('GPU memory needed, MB'),
  gpus: requirements.gpus
    .unwrap()
    .optional()
    .describe('GPUs of one class on one host, held together (default 1), or "all": every GPU of the host'),
  runtime_tags: requirements.runtimeTags.unwrap().optional(),
  time_budget: request.timeBudgetSeconds
    .unwrap()
    .optional()
    .describe('training seconds the script enforces itself (EXPCTL_TIME_BUDGET)'),
  timeout: request.timeoutSeconds.describe('kill limit in seconds from the training start (default 2 x budget)'),
  setup: z.string().min(1).optional().describe('setup command run before training, e.g. "uv sync --frozen"'),
  setup_timeout: request.setupTimeoutSeconds.unwrap().optional(),
  metric: MetricNameSchema.optional().describe("metric that decides (default: the tag's)"),
  maximize: z.boolean().optional().describe('higher metric is better'),
  simplification: z.boolean().optional().describe('the change removes something: an equal result is kept'),
  idempotency_key: request.idempotencyKey.describe('resubmitting with the same key returns the same run'),
  priority: PrioritySchema.optional(),
  max_replacements: request.maxReplacements.unwrap().optional(),
  env: request.env.unwrap().optional().describe('environment variables for the training command'),
  detach: z.boolean().optional().describe('return the ID at once (then call wait); else block until decided'),
};

/** The kill limit must cover the budget: the request schema's rule, checked where both are given. */
const timeoutCoversBudget = (r: { timeout?: number; time_budget?: number }) =>
  r.timeout === undefined || r.time_budget === undefined || r.timeout >= r.time_budget;
const timeoutRule = {
  path: ['timeout'],
  message: 'the kill limit (timeout) must be at least the training budget (time_budget)',
};

export const RunInput = z
  .strictObject({ ...requestFields, commit: gitRef.optional() })
  .refine(timeoutCoversBudget, timeoutRule);

export const BatchInput = z
  .strictObject({
    ...requestFields,
    hypothesis: requestFields.hypothesis.optional().describe("shared hypothesis (default: each commit's subject)"),
    commits: z.array(gitRef).min(1).describe('the variants: commits whose parent is the base'),
    base: gitRef.optional().describe('the commit every variant is a child of (default: HEAD)'),
    deadline: z.number().positive().optional().describe('seconds; variants still going are canceled'),
  })
  .refine(timeoutCoversBudget, timeoutRule);

export const IdInput = z.strictObject({ id: id.describe('experiment ID (wait also takes a batch ID)') });

export const HistoryInput = z.strictObject({
  tag: tag.optional(),
  status: z
    .string()
    .regex(/^[a-z_]{1,40}$/, `a status such as ${TERMINAL_STATUSES.join(', ')}`)
    .optional(),
  category: z.enum(CATEGORIES).optional(),
  limit: z.number().int().min(1).optional().describe('at most N rows (default 50)'),
});

export const TagInput = z.strictObject({ tag });

/** `suggest --k`: as many variants as one batch holds. */
export const SuggestInput = z.strictObject({
  tag,
  k: z.number().int().min(1).max(MAX_BATCH_SIZE).optional().describe('also propose K diverse next variants for batch'),
  all_categories: z.boolean().optional().describe('also list the categories the tag never used'),
});

export const LogsInput = z.strictObject({
  id,
  offset: z.number().int().min(0).optional().describe('byte offset in the log (default: its last `limit` bytes)'),
  limit: z
    .number()
    .int()
    .min(1)
    .max(LOG_PAGE_MAX_BYTES)
    .optional()
    .describe(`bytes to return (default ${LOG_PAGE_DEFAULT_BYTES})`),
});

export type RunInput = z.infer<typeof RunInput>;
export type BatchInput = z.infer<typeof BatchInput>;
export type HistoryInput = z.infer<typeof HistoryInput>;

/** An `expctl` invocation: its arguments and the directory to run it in. */
export interface Invocation {
  args: string[];
  cwd: string;
}

/** `--flag=value` keeps a value that starts with "-" from reading as a flag. */
const flag = (name: string, value: string | number | undefined): string[] =>
  value === undefined ? [] : [`--${name}=${value}`];
const toggle = (name: string, on: boolean | undefined): string[] => (on ? [`--${name}`] : []);

/** The repository the request names: a URL as given, a path resolved against the server's cwd. */
function repoOf(input: { repo?: string }, cwd: string): { repo: string; cwd: string } {
  if (input.repo !== undefined && isRemoteRepo(input.repo)) return { repo: input.repo, cwd };
  const repo = path.resolve(cwd, input.repo ?? '.');
  // Run inside it, as a user would: relative paths the CLI resolves mean the same thing.
  return { repo, cwd: repo };
}

type RequestInput = Omit<RunInput, 'hypothesis'> & { hypothesis?: string };

function requestFlags(input: RequestInput, repo: string): string[] {
  return [
    ...flag('tag', input.tag),
    ...flag('hypothesis', input.hypothesis),
    ...flag('category', input.category),
    ...flag('description', input.description),
    ...flag('repo', repo),
    ...flag('config', input.config),
    ...(input.datasets ?? []).flatMap((d) => flag('dataset', d)),
    // Bare, its value is optional: safe because a "--" flag always follows (--json at the least).
    ...(input.wait_for_data === true ? ['--wait-for-data'] : flag('wait-for-data', input.wait_for_data)),
    ...flag('checkpoint', input.checkpoint),
    ...flag('gpu-class', input.gpu_class),
    ...flag('gpu-mem', input.gpu_mem),
    ...flag('gpus', input.gpus),
    ...(input.runtime_tags ?? []).flatMap((t) => flag('runtime-tag', t)),
    ...flag('time-budget', input.time_budget),
    ...flag('timeout', input.timeout),
    ...flag('setup', input.setup),
    ...flag('setup-timeout', input.setup_timeout),
    ...flag('metric', input.metric),
    ...toggle('maximize', input.maximize),
    ...toggle('simplification', input.simplification),
    ...flag('idempotency-key', input.idempotency_key),
    ...flag('priority', input.priority),
    ...flag('max-replacements', input.max_replacements),
    ...Object.entries(input.env ?? {}).flatMap(([key, value]) => flag('env', `${key}=${value}`)),
    ...toggle('detach', input.detach),
  ];
}

/** The training command goes last, after `--`, exactly as a user types it. */
const commandTail = (command: string[] | undefined) => (command ? ['--', ...command] : []);

export function runArgs(input: RunInput, cwd: string): Invocation {
  const source = repoOf(input, cwd);
  return {
    args: [
      'run',
      ...requestFlags(input, source.repo),
      ...flag('commit', input.commit),
      '--json',
      ...commandTail(input.command),
    ],
    cwd: source.cwd,
  };
}

export function batchArgs(input: BatchInput, cwd: string): Invocation {
  const source = repoOf(input, cwd);
  return {
    args: [
      'batch',
      ...requestFlags(input, source.repo),
      ...flag('base', input.base),
      ...flag('deadline', input.deadline),
      '--json',
      ...input.commits,
      ...commandTail(input.command),
    ],
    cwd: source.cwd,
  };
}

export const idArgs = (command: 'wait' | 'show' | 'cancel', input: { id: string }, cwd: string): Invocation => ({
  args: [command, '--json', input.id],
  cwd,
});

export function historyArgs(input: HistoryInput, cwd: string): Invocation {
  return {
    args: [
      'history',
      ...flag('tag', input.tag),
      ...flag('status', input.status),
      ...flag('category', input.category),
      ...flag('limit', input.limit),
      '--json',
    ],
    cwd,
  };
}

export const tagArgs = (
  command: 'best' | 'suggest',
  input: { tag: string; k?: number; all_categories?: boolean },
  cwd: string,
): Invocation => ({
  args: [
    command,
    ...flag('tag', input.tag),
    ...flag('k', input.k),
    ...toggle('all-categories', input.all_categories),
    '--json',
  ],
  cwd,
});

/** `logs` prints the raw log (no --json); --all makes it the whole log, so any page can be cut from it. */
export const logsArgs = (input: { id: string }, cwd: string): Invocation => ({
  args: ['logs', '--all', input.id],
  cwd,
});
