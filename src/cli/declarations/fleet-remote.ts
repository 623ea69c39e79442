import type { Command } from 'commander';
import { lazy, one, positiveInt } from '../options.js';

/** The `expctl` commands of fleet-remote: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/fleet-remote.js');
const fleetRemoteCheckPushCommand = lazy(load, 'fleetRemoteCheckPushCommand');
const fleetRemoteServeCommand = lazy(load, 'fleetRemoteServeCommand');

export function declareFleetRemote(program: Command): void {
  const fleetRemote = program
    .command('fleet-remote')
    .description('the fleet git remote: submitters push the commits they run, workers fetch them');
  fleetRemote
    .command('serve')
    .description(
      'serve the fleet remote: git over HTTP, signed requests only (EXPCTL_FLEET_REMOTE=expctl+http://ADDR:PORT/fleet.git)',
    )
    .option('--listen <address>', 'address to serve on (default 127.0.0.1; 0.0.0.0 for all)', one('--listen'))
    .option('--port <n>', 'port (default 9418)', positiveInt('--port'))
    .option('--dir <path>', 'the bare repository (default <EXPCTL_HOME>/git/fleet.git)', one('--dir'))
    .action(fleetRemoteServeCommand);
  fleetRemote.command('check-push', { hidden: true }).action(fleetRemoteCheckPushCommand);
}
