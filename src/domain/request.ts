import { z } from 'zod';

/**
 * The experiment request: one schema for the CLI, the client API and the validation activity.
 * Workflow code imports only its types (zod stays out of the workflow sandbox).
 */

export const CATEGORIES = [
  'architecture', 'optimizer', 'hyperparams', 'activation', 'attention', 'embedding', 'normalization',
  'regularization', 'scheduling', 'initialization', 'simplification', 'combination', 'ablation', 'other',
] as const;

const tagName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'letters, digits, "_", "." or "-" (at most 64, starting with a letter or digit)');

export const RequirementsSchema = z.strictObject({
  acceleratorClass: z.string().regex(/^[a-z0-9]+$/, 'an accelerator class such as h100, a100, l4, cpu or any').default('any'),
  gpuMemoryMb: z.number().int().nonnegative().default(0),
  runtimeTags: z.array(z.string().min(1)).default([]),
});

export const ExperimentRequestSchema = z.strictObject({
  tag: tagName,
  hypothesis: z.string().trim().min(1, 'say what the experiment tests').max(2000),
  category: z.enum(CATEGORIES),
  description: z.string().max(2000).default(''),
  command: z.array(z.string().min(1)).min(1, 'the command is an argv array with at least the program').default(['uv', 'run', 'train.py']),
  /** A local repository path (workers on the same host) or a git URL a remote worker can fetch. */
  repo: z.string().min(1),
  /** Full commit SHA, resolved by the client from what the caller named. */
  commit: z.string().regex(/^[0-9a-f]{40}$/, 'a full 40-character commit SHA'),
  /** Config file path inside the repository at that commit; parsed during validation. */
  configPath: z.string().min(1).optional(),
  datasets: z.array(z.string().min(1)).default([]),
  checkpoint: z.string().min(1).optional(),
  requirements: RequirementsSchema.default({ acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] }),
  timeBudgetSeconds: z.number().positive().max(7 * 24 * 3600).default(300),
  graceSeconds: z.number().nonnegative().max(3600).default(30),
  metric: z.strictObject({ name: z.string().min(1), direction: z.enum(['minimize', 'maximize']) }).default({ name: 'val_bpb', direction: 'minimize' }),
  idempotencyKey: z.string().min(1).max(200).optional(),
  /** How often a run whose worker was lost is placed again before it ends as worker_lost. */
  maxReplacements: z.number().int().min(0).max(10).default(0),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
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
