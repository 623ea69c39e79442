import type { Command } from 'commander';
import { jsonOption, lazy } from '../options.js';

/** The `expctl` commands of lineage: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/lineage.js');
const lineageCommand = lazy(load, 'lineageCommand');

export function declareLineage(program: Command): void {
  program
    .command('lineage')
    .description(
      'what made a dataset version, experiment, artifact or model version, and what it went into (from the catalog)',
    )
    .argument('<ref>', 'NAME@V (dataset version), an experiment ID, EXPERIMENT_ID:PATH (artifact) or model:NAME@V')
    .option('--upstream', 'only what made it: data, the run, the artifact')
    .option('--downstream', 'only what it went into: runs, artifacts, model versions and their aliases')
    .addOption(jsonOption())
    .action(lineageCommand);
}
