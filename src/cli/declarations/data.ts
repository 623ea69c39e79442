import type { Command } from 'commander';
import { jsonOption, lazy, one } from '../options.js';

/** The `expctl` commands of data: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/data.js');
const alertsCommand = lazy(load, 'alertsCommand');
const dataAddCommand = lazy(load, 'dataAddCommand');
const dataPolicyCommand = lazy(load, 'dataPolicyCommand');
const dataShowCommand = lazy(load, 'dataShowCommand');
const dataVersionsCommand = lazy(load, 'dataVersionsCommand');
const dataWatchCommand = lazy(load, 'dataWatchCommand');
const gatesCommand = lazy(load, 'gatesCommand');

export function declareData(program: Command): void {
  const data = program.command('data').description('datasets: immutable versions of shards, sealed and gated');
  data
    .command('add')
    .description('offer files as shards of a dataset (several files: shards 0..k-1 of k); signed as add_data')
    .argument('<dataset>', 'dataset name')
    .argument('<files...>', 'shard files (the orchestrator reads them: same filesystem)')
    .option('--version <v>', 'the version they belong to (default: the open version, else a new one)', one('--version'))
    .option('--shard <i/N>', 'this one file is shard i of N (0-based)', one('--shard'))
    .option(
      '--sha256 <hex>',
      "the file's declared hash (default: FILE.sha256 sidecar, else computed here)",
      one('--sha256'),
    )
    .option('--records <n>', 'the declared record count of this one file', one('--records'))
    .option('--lateness <duration>', 'lateness allowance of a version these shards open (e.g. 30m)', one('--lateness'))
    .addOption(jsonOption())
    .action(dataAddCommand);
  data
    .command('watch')
    .description(
      'offer shard files as a producer drops them in DIR (names NAME-SHARD-of-COUNT.EXT; *.tmp, *.part skipped)',
    )
    .argument('<dir>', 'directory to watch')
    .option('--dataset <name>', 'dataset (default: NAME of each file)', one('--dataset'))
    .option('--rescan <duration>', 'rescan the directory this often besides fs.watch (default 5s)', one('--rescan'))
    .option('--lateness <duration>', 'lateness allowance of versions its shards open', one('--lateness'))
    .option('--once', 'scan once, offer what is there, and exit')
    .addOption(jsonOption())
    .action(dataWatchCommand);
  data
    .command('policy')
    .description("set a dataset's lateness allowance and late policy; signed as configure_dataset")
    .argument('<dataset>', 'dataset name')
    .option(
      '--lateness <duration>',
      'how long a version waits for missing shards after it opens (e.g. 30m)',
      one('--lateness'),
    )
    .option('--late-policy <policy>', 'next (late shards go to the next version) or refuse', one('--late-policy'))
    .addOption(jsonOption())
    .action(dataPolicyCommand);
  data
    .command('versions')
    .description("datasets' versions from the catalog: status, shards, records, manifest")
    .argument('[dataset]', 'only this dataset')
    .addOption(jsonOption())
    .action(dataVersionsCommand);
  data
    .command('show')
    .description('one version: shards, gates with codes and history, late shards, alerts')
    .argument('<ref>', 'NAME@VERSION')
    .addOption(jsonOption())
    .action(dataShowCommand);
  program
    .command('gates')
    .description('gate pass rates and failure codes per day')
    .option('--dataset <name>', 'only this dataset', one('--dataset'))
    .option('--since <time>', 'ISO time, or a duration back from now (7d)', one('--since'))
    .addOption(jsonOption())
    .action(gatesCommand);
  program
    .command('alerts')
    .description('alerts: failed gates, late shards, shard conflicts, blocked promotions')
    .option('--since <time>', 'ISO time, or a duration back from now (7d)', one('--since'))
    .addOption(jsonOption())
    .action(alertsCommand);
}
