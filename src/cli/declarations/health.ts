import type { Command } from 'commander';
import { jsonOption, lazy } from '../options.js';

/** The `expctl` commands of health: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/health.js');
const healthCommand = lazy(load, 'healthCommand');
const scheduleEnsureCommand = lazy(load, 'scheduleEnsureCommand');

export function declareHealth(program: Command): void {
  program
    .command('health')
    .description('latest fleet health check per host and GPU')
    .addOption(jsonOption())
    .action(healthCommand);
  program
    .command('schedule')
    .description('Temporal Schedules of expctl')
    .command('ensure')
    .description('create the fleet health Schedule if missing')
    .action(scheduleEnsureCommand);
}
