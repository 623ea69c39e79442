import { z } from 'zod';

/**
 * What each tool's structured content holds: the CLI's JSON, described loosely (every field
 * optional, others allowed) so that a schema here can never reject what the CLI printed.
 */

const nullableString = z.string().nullable().optional();
const nullableNumber = z.number().nullable().optional();

/** `run`, `wait` and `cancel` print one experiment result (`run --detach`: its ID and status). */
export const ExperimentResultOutput = z.looseObject({
  experiment_id: nullableString.describe('null when the request was refused before it existed'),
  tag: z.string().optional(),
  status: z.string().optional().describe('completed, validation_failed, command_failed, ... or submitted (detach)'),
  decision: nullableString.describe('keep or discard'),
  action: nullableString.describe('keep_commit or git_reset'),
  metric_name: z.string().optional(),
  metric: nullableNumber,
  best: nullableNumber,
  delta: nullableNumber,
  near_miss: z.boolean().optional(),
  consecutive_crashes: z.number().optional(),
  should_abort: z.boolean().optional(),
  reason: z.string().optional(),
});

/** `batch` (and `wait` on a batch ID) print the tournament's result. */
export const BatchResultOutput = z.looseObject({
  batch_id: nullableString,
  tag: z.string().optional(),
  status: z.string().optional().describe('validation_failed when refused, submitted with detach'),
  action: nullableString.describe('advance (git reset --hard to commit) or reset (back to the base)'),
  commit: nullableString,
  winner: nullableString.describe("the kept child's experiment ID"),
  best: nullableNumber,
  reason: z.string().optional(),
  children: z.array(z.unknown()).optional().describe('one experiment result per variant (IDs with detach)'),
});

/** `wait` takes an experiment or a batch ID. */
export const WaitOutput = z.looseObject({
  ...ExperimentResultOutput.shape,
  ...BatchResultOutput.shape,
});

export const ShowOutput = z.looseObject({
  experimentId: z.string().optional(),
  status: z.string().optional(),
  request: z.unknown().optional(),
  timeline: z.array(z.unknown()).optional(),
  record: z.unknown().optional().describe('the catalog record, or null'),
  audit: z.array(z.unknown()).optional(),
});

/** `history` prints a JSON array; MCP structured content is an object, so it is under `experiments`. */
export const HistoryOutput = z.looseObject({
  experiments: z.array(z.unknown()).describe('catalog rows, newest first'),
});

export const BestOutput = z.looseObject({
  id: z.string().optional(),
  metricName: z.string().optional(),
  metric: nullableNumber,
  commit: z.string().optional(),
  byClass: z.record(z.string(), z.unknown()).optional().describe('the best per accelerator class'),
});

export const SuggestOutput = z.looseObject({ tag: z.string().optional() });

export const LogsOutput = z.looseObject({
  experiment_id: z.string(),
  offset: z.number().describe('byte offset of text in the log'),
  next_offset: z.number().describe('offset of the next page'),
  size: z.number().describe('bytes in the log when read'),
  eof: z.boolean(),
  text: z.string(),
  note: z.string().optional().describe('why there is no log yet'),
});
