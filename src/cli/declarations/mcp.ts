import type { Command } from 'commander';
import { lazy } from '../options.js';

/** The `expctl` commands of mcp: names, options and help; each action loads its module when it runs. */
const load = () => import('../../mcp/server.js');
const serveMcp = lazy(load, 'serveMcp');

export function declareMcp(program: Command): void {
  program
    .command('mcp')
    .description(
      'an MCP server on stdio: run, batch, wait, show, history, best, suggest, cancel, logs as tools for agents',
    )
    .action(() => serveMcp());
}
