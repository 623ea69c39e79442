import type { Command } from 'commander';
import { jsonOption, lazy, one } from '../options.js';

/** The `expctl store` commands (the fleet store's usage and retention); each action loads its module when it runs. */
const load = () => import('../commands/store.js');
const storeDuCommand = lazy(load, 'storeDuCommand');
const storeGcCommand = lazy(load, 'storeGcCommand');

export function declareStore(program: Command): void {
  const store = program
    .command('store')
    .description('the fleet store that holds artifacts, checkpoints, logs and patches (EXPCTL_STORE)');
  store
    .command('du')
    .description("the store's usage: objects and bytes, by kind (checkpoints, logs, artifacts, patches, unreferenced)")
    .addOption(jsonOption())
    .action(storeDuCommand);
  store
    .command('gc')
    .description(
      'remove what nothing refers to any more: documents of finished runs neither kept nor a model version, and unreferenced objects, older than the limit',
    )
    .option('--older-than <duration>', 'keep anything younger than this (default 30d)', one('--older-than'))
    .option('--dry-run', 'say what would be removed; remove nothing')
    .addOption(jsonOption())
    .action(storeGcCommand);
}
