import type { Command } from 'commander';
import { lazy } from '../options.js';

/** The `expctl` commands of install-temporal: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/install-temporal.js');
const installTemporalCommand = lazy(load, 'installTemporalCommand');

export function declareInstallTemporal(program: Command): void {
  program
    .command('install-temporal')
    .description('make the pinned Temporal CLI available (build or download once, cached per user) and print its path')
    .action(() => installTemporalCommand());
}
