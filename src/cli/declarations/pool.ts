import type { Command } from 'commander';
import { jsonOption, lazy, one } from '../options.js';

/** The `expctl` commands of pool: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/pool.js');
const drainCommand = lazy(load, 'drainCommand');
const poolCommand = lazy(load, 'poolCommand');
const repairPoolCommand = lazy(load, 'repairPoolCommand');

export function declarePool(program: Command): void {
  const pool = program
    .command('pool')
    .description('the fleet: each slot, its state and lease; the queue')
    .addOption(jsonOption())
    .action(poolCommand);
  pool
    .command('drain')
    .argument('<target>', 'host or slot id')
    .option('--reason <text>', 'why (shown in pool)', one('--reason'))
    .addOption(jsonOption())
    .action((target: string, options: { reason?: string; json?: boolean }) => drainCommand(target, true, options));
  pool
    .command('undrain')
    .argument('<target>', 'host or slot id')
    .addOption(jsonOption())
    .action((target: string, options: { json?: boolean }) => drainCommand(target, false, options));
  pool
    .command('repair')
    .description(
      'repair a stalled pool (its workflow tasks failing): reset it to its last good task and give back every signal since, except those it cannot read or that fail it again; prints what it dropped',
    )
    .addOption(jsonOption())
    .action(repairPoolCommand);
}
