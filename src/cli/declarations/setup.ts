import type { Command } from 'commander';
import { lazy } from '../options.js';

/** The `expctl` commands of setup: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/setup.js');
const setupCommand = lazy(load, 'setupCommand');

export function declareSetup(program: Command): void {
  program
    .command('setup')
    .description("register expctl's search attributes in the namespace (real clusters)")
    .action(setupCommand);
}
