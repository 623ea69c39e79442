import type { Command } from 'commander';
import { collect, lazy, one, positiveInt } from '../options.js';

/** The `expctl` commands of codec-server: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/codec-server.js');
const codecServerCommand = lazy(load, 'codecServerCommand');

export function declareCodecServer(program: Command): void {
  program
    .command('codec-server')
    .description("Temporal's remote codec endpoint, so the Web UI shows expctl's encrypted payloads in plaintext")
    .option('--port <port>', 'port (default EXPCTL_CODEC_PORT, else the dev Web UI port + 1)', positiveInt('--port'))
    .option('--host <address>', 'address to listen on (default 127.0.0.1)', one('--host'))
    .option(
      '--ui-origin <url>',
      'Web UI allowed to call it from a browser (repeatable; default: the running expctl dev UI)',
      collect,
      [],
    )
    .option(
      '--token-file <file>',
      'file (mode 0600) holding the token (default: $EXPCTL_HOME/codec-server.token, made if missing)',
      one('--token-file'),
    )
    .action(codecServerCommand);
}
