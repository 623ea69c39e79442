import type { Command } from 'commander';
import { MAX_BATCH_SIZE } from '../../domain/tournament.js';
import { jsonOption, lazy, one, positiveInt, usage } from '../options.js';
import { parseNumber } from '../parse.js';

/** The `expctl` commands of records: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/records.js');
const bestCommand = lazy(load, 'bestCommand');
const historyCommand = lazy(load, 'historyCommand');
const nearMissesCommand = lazy(load, 'nearMissesCommand');
const reportCommand = lazy(load, 'reportCommand');
const strategyCommand = lazy(load, 'strategyCommand');
const suggestCommand = lazy(load, 'suggestCommand');

export function declareRecords(program: Command): void {
  program
    .command('history')
    .description("a tag's experiments from the catalog, newest first")
    .option('--tag <tag>', 'only this tag', one('--tag'))
    .option('--status <status>', 'only this status', one('--status'))
    .option('--category <category>', 'only this category', one('--category'))
    .option('--limit <n>', 'at most N rows (default 50)', positiveInt('--limit'))
    .addOption(jsonOption())
    .action(historyCommand);
  program
    .command('best')
    .description("the tag's best kept run")
    .requiredOption('--tag <tag>', 'tag', one('--tag'))
    .addOption(jsonOption())
    .action(bestCommand);
  program
    .command('near-misses')
    .description('runs within the near-miss threshold of the best')
    .requiredOption('--tag <tag>', 'tag', one('--tag'))
    .addOption(jsonOption())
    .action(nearMissesCommand);
  program
    .command('report')
    .description('summary | tsv | diff A B | tags | html')
    .argument('<kind>')
    .argument('[ids...]')
    .option('--tag <tag>', 'tag', one('--tag'))
    .option('--out <file>', 'where report html writes the page', one('--out'))
    .option(
      '--columns <list>',
      'report tsv columns: default,score,... (commit, metric, memory_gb, status, description or --- block keys)',
      one('--columns'),
    )
    .addOption(jsonOption())
    .action((kind: string, ids: string[], o: { tag?: string; json?: boolean; out?: string; columns?: string }) =>
      reportCommand(kind, ids, o),
    );
  program
    .command('strategy')
    .description("the tag's search mode; --set MODE --reason TEXT overrides it (auto: back to the rule)")
    .requiredOption('--tag <tag>', 'tag', one('--tag'))
    .option('--set <mode>', 'explore, exploit, combine, ... or auto', one('--set'))
    .option('--reason <text>', 'why the mode is set', one('--reason'))
    .addOption(jsonOption())
    .action(strategyCommand);
  program
    .command('suggest')
    .description(
      'what to try next: category statistics, under-explored and high-yield categories, near misses to combine, trend',
    )
    .requiredOption('--tag <tag>', 'tag', one('--tag'))
    .option(
      '--k <n>',
      `also propose N diverse next variants, for \`expctl batch\` (1-${MAX_BATCH_SIZE})`,
      (raw: string) => usage(() => parseNumber('--k', raw, { integer: true, min: 1, max: MAX_BATCH_SIZE })),
    )
    .option('--all-categories', 'also list the categories the tag never used (as under-explored)')
    .addOption(jsonOption())
    .action(suggestCommand);
}
