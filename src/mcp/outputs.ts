import { z } from 'zod';
import {
  BatchResultOutput as BatchResult,
  BestOutput as Best,
  ExperimentResultOutput as ExperimentResult,
  HistoryOutput as History,
  LogsOutput,
  ShowOutput as Show,
  SuggestOutput as Suggest,
} from '../cli/output-schemas.js';

/**
 * Each tool's structured content: the CLI's `--json` output, described by the CLI's own schemas
 * (src/cli/output-schemas.ts). Every top-level field is optional here, so that what the CLI prints
 * instead of a result (an error's `{error, message}`) is still passed on, never rejected.
 */

export const ExperimentResultOutput = ExperimentResult.partial();
export const BatchResultOutput = BatchResult.partial();
/** `wait` takes an experiment or a batch ID: either result. */
export const WaitOutput = z.looseObject({ ...ExperimentResult.shape, ...BatchResult.shape }).partial();
/** `show` also takes a promotion or a dataset version ID: their own record then. */
export const ShowOutput = Show.extend({
  record: z.union([Show.shape.record, z.looseObject({}).describe('a promotion or dataset version record')]),
}).partial();
/** `history` prints a JSON array; MCP structured content is an object, so it is under `experiments`. */
export const HistoryOutput = z.looseObject({ experiments: History.describe('catalog rows, newest first') }).partial();
export const BestOutput = Best.partial();
export const SuggestOutput = Suggest.partial();
export { LogsOutput };
