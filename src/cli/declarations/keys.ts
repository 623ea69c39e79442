import type { Command } from 'commander';
import { jsonOption, lazy } from '../options.js';

/** The `expctl` commands of keys: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/keys.js');
const keysInitCommand = lazy(load, 'keysInitCommand');
const keysListCommand = lazy(load, 'keysListCommand');
const keysRotateCommand = lazy(load, 'keysRotateCommand');

export function declareKeys(program: Command): void {
  const keys = program
    .command('keys')
    .description(
      'the payload keyring (EXPCTL_KEY_FILE, else $EXPCTL_HOME/keys/payload-keys.json) that encrypts what expctl sends to Temporal',
    );
  keys
    .command('init')
    .description('create a keyring with one new key (mode 0600); refuses to replace one')
    .addOption(jsonOption())
    .action(keysInitCommand);
  keys
    .command('rotate')
    .description('add a new key and make it current; old keys stay so that older payloads still decrypt')
    .addOption(jsonOption())
    .action(keysRotateCommand);
  keys
    .command('list')
    .description('key ids and the current one (never a key)')
    .addOption(jsonOption())
    .action(keysListCommand);
}
