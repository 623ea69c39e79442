import type { Command } from 'commander';
import { lazy, one, positiveInt } from '../options.js';
import type { DevOptions } from '../commands/dev.js';

/** The `expctl` commands of dev: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/dev.js');
const devCommand = lazy(load, 'devCommand');

export function declareDev(program: Command): void {
  program
    .command('dev')
    .description('start the local stack: Temporal dev server + Web UI, orchestrator, one GPU worker')
    .option('--no-demo', 'do not run the example campaign after start')
    .option(
      '--cpu-slots <n>',
      'CPU slots for the local worker instead of GPUs (without GPUs: half the cores, at least 2)',
      positiveInt('--cpu-slots'),
    )
    .option('--no-worker', 'the control plane only (server, orchestrator): GPU hosts join with `expctl worker`')
    .option(
      '--listen <address>',
      'serve other hosts on this address of this host (0.0.0.0 for all of them); default loopback only, or EXPCTL_TEMPORAL_IP',
      one('--listen'),
    )
    .action((options: DevOptions) => devCommand(options));
}
