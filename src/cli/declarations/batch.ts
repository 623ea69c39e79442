import type { Command } from 'commander';
import { jsonOption, lazy } from '../options.js';
import { occurrences } from '../parse.js';
import { requestOptions } from './experiments.js';
import type { RawBatchOptions } from '../parse.js';

/** The `expctl` commands of batch: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/batch.js');
const batchCommand = lazy(load, 'batchCommand');

export function declareBatch(program: Command): void {
  requestOptions(
    program
      .command('batch')
      .description(
        "run K variants of one base in parallel and keep at most one: the best that beats the tag's best (a tournament)",
      )
      .usage('--tag T --category C [--base REF] [options as for run] COMMIT... -- COMMAND...')
      .argument(
        '<commit...>',
        'the variants: commits whose parent is the base; then -- and the training command (default: uv run train.py)',
      ),
    { variants: true },
  )
    .option('--base <ref>', 'the commit every variant is a child of (default: HEAD)', occurrences)
    .option('--deadline <seconds>', 'cancel variants still going after this long, and decide on the rest', occurrences)
    .option('--detach', 'print the batch ID at once and return')
    .addOption(jsonOption())
    .action((args: string[], options: RawBatchOptions) => batchCommand(args, options));
}
