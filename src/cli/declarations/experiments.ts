import { type Command, Option } from 'commander';
import { DEFAULT_WAIT_FOR_DATA_SECONDS } from '../../domain/dataset-refs.js';
import { DEFAULT_METRIC } from '../../domain/decision.js';
import {
  DEFAULT_MAX_REPLACEMENTS,
  DEFAULT_SETUP_TIMEOUT_SECONDS,
  DEFAULT_TIME_BUDGET_SECONDS,
  KILL_LIMIT_FACTOR,
  MIN_KILL_HEADROOM_SECONDS,
} from '../../domain/limits.js';
import { MAX_GPUS_PER_RUN } from '../../domain/bounds.js';
import { CATEGORIES, PRIORITY_RANGE } from '../../domain/request.js';
import { jsonOption, lazy } from '../options.js';
import { occurrences } from '../parse.js';
import type { RawRunOptions } from '../parse.js';

/** The `expctl` commands of experiments: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/experiments.js');
const cancelCommand = lazy(load, 'cancelCommand');
const logsCommand = lazy(() => import('../commands/logs.js'), 'logsCommand');
const runCommand = lazy(load, 'runCommand');
const showCommand = lazy(load, 'showCommand');
const waitCommand = lazy(load, 'waitCommand');

// Every valued flag of `run` (and `batch`) is collected as given; parseRunFlags (parse.ts) refuses
// repeats of single-valued flags and malformed values, all at once and before anything is submitted.
export function requestOptions(command: Command, { variants = false } = {}): Command {
  return (
    command
      .option('--tag <tag>', 'campaign tag; the decision compares with its best run', occurrences)
      .option('--hypothesis <text>', 'what this experiment tests', occurrences)
      .option('--category <category>', `kind of change: ${CATEGORIES.join(', ')}`, occurrences)
      .option('--description <text>', 'longer description', occurrences)
      .option('--repo <path|url>', 'git repository (default: the one containing the current directory)', occurrences)
      // A batch names its variants as arguments; its --commit is only parsed, to be refused with a reason.
      .addOption(
        new Option('--commit <sha>', 'commit to run (default: HEAD, which must have no uncommitted changes)')
          .argParser(occurrences)
          .hideHelp(variants),
      )
      .option('--config <file>', 'JSON config file in the repository, parsed and recorded', occurrences)
      .option(
        '--dataset <ref>',
        "dataset version NAME@latest or NAME@V (pinned in the record), or a path under the worker's datasets root (repeatable)",
        occurrences,
      )
      .option(
        '--wait-for-data [seconds]',
        `wait (state waiting_for_data) for a passed version of a NAME@latest dataset (default ${DEFAULT_WAIT_FOR_DATA_SECONDS} s)`,
      )
      .option(
        '--checkpoint <path>',
        "checkpoint to start from: a path in the repository or under the checkpoints root, or store:EXPERIMENT_ID (that run's latest synced checkpoint)",
        occurrences,
      )
      .option('--gpu-class <class>', 'accelerator class: h100, a100, l4, cpu, any, ...', occurrences)
      .option('--gpu-mem <mb>', 'GPU memory needed, in MB (integer)', occurrences)
      .option(
        '--gpus <count>',
        `GPUs of one class on one host, held together (default 1; at most ${MAX_GPUS_PER_RUN}), or "all": every GPU of the host it lands on`,
        occurrences,
      )
      .option('--runtime-tag <tag>', 'runtime tag the worker must have (repeatable)', occurrences)
      .option(
        '--time-budget <seconds>',
        `training time the script enforces itself, passed as EXPCTL_TIME_BUDGET (default ${DEFAULT_TIME_BUDGET_SECONDS})`,
        occurrences,
      )
      .option(
        '--timeout <seconds>',
        `kill limit counted from the training process start (default ${KILL_LIMIT_FACTOR} x the budget, at least the budget + ${MIN_KILL_HEADROOM_SECONDS} s)`,
        occurrences,
      )
      .option(
        '--setup <command>',
        'environment setup run in the worktree before training, e.g. "uv sync --frozen" (split into words, no shell)',
        occurrences,
      )
      .option(
        '--setup-timeout <seconds>',
        `limit of the setup phase (default ${DEFAULT_SETUP_TIMEOUT_SECONDS})`,
        occurrences,
      )
      .option(
        '--metric <name>',
        `metric that decides (default: the tag's, ${DEFAULT_METRIC.name} for a new tag)`,
        occurrences,
      )
      .option('--maximize', 'higher metric is better (default: lower is better)')
      .option('--simplification', 'the change removes something: an equal result is kept')
      .option(
        '--idempotency-key <key>',
        'resubmitting the same request with the same key returns the same experiment',
        occurrences,
      )
      .option(
        '--priority <n>',
        `queue priority, an integer from ${PRIORITY_RANGE.min} to ${PRIORITY_RANGE.max} (higher first; default 0)`,
        occurrences,
      )
      .option(
        '--max-replacements <n>',
        `times a run whose worker was lost is placed again (default ${DEFAULT_MAX_REPLACEMENTS})`,
        occurrences,
      )
      .option('--env <KEY=VALUE>', 'environment variable for the training command (repeatable)', occurrences)
      .option(
        '--secret <NAME[=@FILE]>',
        "secret for the training command as variable NAME, from your environment's NAME or a file; never shown or recorded (repeatable)",
        occurrences,
      )
      .addOption(new Option('--grace <seconds>').hideHelp().argParser(occurrences))
  );
}

export function declareRun(program: Command): void {
  requestOptions(
    program
      .command('run')
      .description('run one experiment and print its decision (keep/discard) and the git action to take')
      .usage('--tag T --hypothesis TEXT --category C [options] -- COMMAND...'),
  )
    .option('--detach', 'print the experiment ID at once and return')
    .addOption(jsonOption())
    .argument('[command...]', 'training command, after --  (default: uv run train.py)')
    .action((command: string[], options: RawRunOptions) => runCommand(command, options));
}

export function declareExperimentReads(program: Command): void {
  program
    .command('wait')
    .description('wait for an experiment and print its result')
    .argument('<id>')
    .addOption(jsonOption())
    .action(waitCommand);
  program
    .command('show')
    .description("an experiment's live state and record")
    .argument('<id>')
    .option('--patch', "print the run's whole patch (its commit against the parent), from the catalog")
    .addOption(jsonOption())
    .action(showCommand);
  program
    .command('logs')
    .description("an experiment's training log, from the worker that ran it, or from the fleet store when it is gone")
    .argument('<id>')
    .option('-f, --follow', 'keep printing until the run ends')
    .option('--all', 'the whole log from its start (default: its last MiB)')
    .action(logsCommand);
  program
    .command('cancel')
    .description('cancel an experiment: lease released, process group killed')
    .argument('<id>')
    .addOption(jsonOption())
    .action(cancelCommand);
}
