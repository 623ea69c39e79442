import type { Command } from 'commander';
import { collect, jsonOption, lazy } from '../options.js';
import type { RepeatOptions } from '../commands/actions.js';

/** The `expctl` commands of actions: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/actions.js');
const repeatCommand = lazy(load, 'repeatCommand');

/** What each of the two says in help; everything else they share. */
const REPEATS = {
  retry: 'run the same request again as a new experiment linked to the old',
  rerun: 'reproduce a recorded run: same commit, patch, config, datasets',
} as const;

/** `retry` and `rerun`: one declaration, two names. */
export function declareRepeat(program: Command): void {
  for (const [kind, description] of Object.entries(REPEATS) as ['retry' | 'rerun', string][]) {
    const command = program
      .command(kind)
      .description(description)
      .argument('<id>')
      .option('--detach')
      .option(
        '--secret <NAME[=@FILE]>',
        "a secret of the original run, from a file (default: your environment's NAME) (repeatable)",
        collect,
        [],
      )
      .addOption(jsonOption())
      .action((id: string, o: RepeatOptions) => repeatCommand(kind, id, o));
    if (kind === 'retry')
      command.option(
        '--resume',
        "restore the old run's latest checkpoint from the fleet store before the script starts (refused when it left none)",
      );
  }
}
