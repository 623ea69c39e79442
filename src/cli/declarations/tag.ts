import type { Command } from 'commander';
import { DEFAULT_TAG_POLICY } from '../../domain/decision.js';
import { collect, jsonOption, lazy, metricOption, one, tagArgument } from '../options.js';
import { occurrences } from '../parse.js';

/** The `expctl` commands of tag: names, options and help; each action loads its module when it runs. */
const actionsModule = () => import('../commands/actions.js');
const tagStopCommand = lazy(actionsModule, 'tagStopCommand');
const tagModule = () => import('../commands/tag.js');
const tagCreateCommand = lazy(tagModule, 'tagCreateCommand');
const tagShowCommand = lazy(tagModule, 'tagShowCommand');

export function declareTag(program: Command): void {
  const tag = program.command('tag').description("a tag's policy and state");
  tag
    .command('create')
    .argument('<tag>', 'tag name', tagArgument)
    .option('--metric <name>', 'metric that decides', metricOption('--metric'))
    .option('--maximize', 'higher is better')
    .option(
      '--near-miss <threshold>',
      `near-miss threshold (default ${DEFAULT_TAG_POLICY.nearMissThreshold})`,
      one('--near-miss'),
    )
    .option(
      '--max-crashes <n>',
      `consecutive crashes before should_abort (default ${DEFAULT_TAG_POLICY.maxConsecutiveCrashes})`,
      one('--max-crashes'),
    )
    .option('--compare-across-classes', 'compare runs on different accelerator classes')
    .option(
      '--min-improvement <x>',
      `noise floor: keep only when the improvement exceeds X (default ${DEFAULT_TAG_POLICY.minImprovement})`,
      one('--min-improvement'),
    )
    .option(
      '--guard <expr>',
      'block value that must hold for a keep, e.g. val_pass==true or sharpe>=1.5 (repeatable)',
      collect,
      [],
    )
    .option(
      '--allow-env <name>',
      'allow runs of the tag to set this loader/interpreter variable, e.g. LD_PRELOAD (repeatable; replaces the list)',
      occurrences,
    )
    .addOption(jsonOption())
    .action(tagCreateCommand);
  tag.command('show').argument('<tag>', 'tag name', tagArgument).addOption(jsonOption()).action(tagShowCommand);
  tag
    .command('stop')
    .description('cancel every queued or running experiment of the tag')
    .argument('<tag>', 'tag name', tagArgument)
    .addOption(jsonOption())
    .action(tagStopCommand);
}
