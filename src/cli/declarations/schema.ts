import type { Command } from 'commander';
import { jsonOption, lazy } from '../options.js';

/** The `expctl` commands of schema: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/schema.js');
const schemaCommand = lazy(load, 'schemaCommand');

export function declareSchema(program: Command): void {
  program
    .command('schema')
    .description("the JSON Schema of a command's --json output (without NAME: the outputs there are)")
    .argument('[name]', 'an output: run, show, history, best, pool-drain, report-diff, ...')
    .addOption(jsonOption())
    .action(schemaCommand);
}
