import type { Command } from 'commander';
import { jsonOption, lazy } from '../options.js';

/** The `expctl artifacts` command: name, options and help; its action loads its module when it runs. */
const load = () => import('../commands/artifacts.js');
const artifactsCommand = lazy(load, 'artifactsCommand');

export function declareArtifacts(program: Command): void {
  program
    .command('artifacts')
    .description(
      "a run's artifacts (path, bytes, sha256, store URI) from the record; --get fetches one from the fleet store",
    )
    .argument('<id>', 'experiment ID')
    .option('--get <path>', 'the artifact to fetch (its path as listed), verified by its sha256')
    .option('--out <file>', 'where --get writes it')
    .addOption(jsonOption())
    .action(artifactsCommand);
}
