import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { CATEGORIES, PRIORITY_RANGE } from '../domain/request.js';
import { DEFAULT_METRIC, DEFAULT_TAG_POLICY } from '../domain/decision.js';
import { DEFAULT_WAIT_FOR_DATA_SECONDS } from '../domain/dataset-refs.js';
import { DEFAULT_POOL_HEARTBEAT_MS, MISSED_HEARTBEATS_BEFORE_LOST } from '../domain/fleet.js';
import { MAX_BATCH_SIZE } from '../domain/tournament.js';
import {
  DEFAULT_MAX_REPLACEMENTS,
  DEFAULT_SETUP_TIMEOUT_SECONDS,
  DEFAULT_TIME_BUDGET_SECONDS,
  KILL_LIMIT_FACTOR,
  MIN_KILL_HEADROOM_SECONDS,
} from '../domain/limits.js';
import type { RawBatchOptions, RawRunOptions } from './parse.js';
import type { DevOptions } from './commands/dev.js';
import type { RepeatOptions } from './commands/actions.js';
import { EXIT_CODES } from '../domain/exit-codes.js';
import { drained, printJson, safeText, wantsJson } from './output.js';
import { useStack } from '../shared/stack.js';
import { checkMetricName, checkTag, FlagError, numberOption, occurrences, parseNumber, singleOption } from './parse.js';
import {
  batchCommand,
  refuseBatch,
  authInitCommand,
  authIssueCommand,
  authRevokeCommand,
  authWhoamiCommand,
  codecServerCommand,
  devCommand,
  cancelCommand,
  logsCommand,
  refuseRun,
  runCommand,
  showCommand,
  waitCommand,
  healthCommand,
  scheduleEnsureCommand,
  installTemporalCommand,
  keysInitCommand,
  keysListCommand,
  keysRotateCommand,
  drainCommand,
  poolCommand,
  repairPoolCommand,
  setupCommand,
  tagCreateCommand,
  tagShowCommand,
  repeatCommand,
  tagStopCommand,
  bestCommand,
  historyCommand,
  nearMissesCommand,
  reportCommand,
  strategyCommand,
  suggestCommand,
  orchestratorCommand,
  workerCommand,
  decideCommand,
  modelsCommand,
  promoteCommand,
  promotionShowCommand,
  rollbackCommand,
  lineageCommand,
  fleetRemoteCheckPushCommand,
  fleetRemoteServeCommand,
  alertsCommand,
  dataAddCommand,
  dataPolicyCommand,
  dataShowCommand,
  dataVersionsCommand,
  dataWatchCommand,
  gatesCommand,
  serveMcp,
  schemaCommand,
} from './lazy-commands.js';

/** The version in package.json (the same file from src/cli and from the compiled dist/cli). */
function packageVersion(): string {
  const file = new URL('../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

const positiveInt = (flag: string) => numberOption(flag, { integer: true, min: 1 });
function indexList(raw: string, previous: unknown): number[] {
  if (previous !== undefined)
    throw new InvalidArgumentError('--gpus was given more than once; list every GPU in one value, e.g. 0,2');
  const parts = raw.split(',');
  if (parts.some((part) => !/^\d+$/.test(part))) throw new InvalidArgumentError('expected GPU indexes such as 0,2');
  return parts.map(Number);
}
const collect = (value: string, previous: string[]) => [...previous, value];
/** A text flag that takes one value. */
const one = singleOption;
/** Turns a FlagError of a check into commander's usage error. */
function usage<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (error instanceof FlagError) throw new InvalidArgumentError(error.message);
    throw error;
  }
}
const tagArgument = (raw: string) => usage(() => checkTag('<tag>', raw));
function metricOption(flag: string) {
  const single = singleOption(flag);
  return (raw: string, previous: unknown): string => usage(() => checkMetricName(flag, single(raw, previous)));
}
const jsonOption = () => new Option('--json', 'print JSON (the default when stdout is not a terminal)');

// `expctl logs ID | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit();
  throw error;
});
process.stderr.on('error', () => undefined);

const program = new Command()
  .name('expctl')
  .description('Durable experiment orchestration for ML research on GPU fleets, on Temporal')
  .version(packageVersion(), '-V, --version', 'print the version')
  // Options after a subcommand are that command's (`data add --version 3` is not expctl's version).
  .enablePositionalOptions()
  .showHelpAfterError();

// Every valued flag of `run` (and `batch`) is collected as given; parseRunFlags (parse.ts) refuses
// repeats of single-valued flags and malformed values, all at once and before anything is submitted.
function requestOptions(command: Command, { variants = false } = {}): Command {
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
        'checkpoint to resume from (in the repository or under the checkpoints root)',
        occurrences,
      )
      .option('--gpu-class <class>', 'accelerator class: h100, a100, l4, cpu, any, ...', occurrences)
      .option('--gpu-mem <mb>', 'GPU memory needed, in MB (integer)', occurrences)
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

requestOptions(
  program
    .command('batch')
    .description(
      "run K variants of one base in parallel and keep at most one: the best that beats the tag's best (a tournament)",
    )
    .usage('--tag T --category C [--base REF] [options as for run] COMMIT... -- COMMAND...')
    .argument(
      '<commit...>',
      'the variants: commits whose parent is the base; then -- and the training command (default: uv run train.py)',
    ),
  { variants: true },
)
  .option('--base <ref>', 'the commit every variant is a child of (default: HEAD)', occurrences)
  .option('--deadline <seconds>', 'cancel variants still going after this long, and decide on the rest', occurrences)
  .option('--detach', 'print the batch ID at once and return')
  .addOption(jsonOption())
  .action((args: string[], options: RawBatchOptions) => batchCommand(args, options));

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
  .description("an experiment's training log, read from the worker that ran it")
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

program
  .command('retry')
  .description('run the same request again as a new experiment linked to the old')
  .argument('<id>')
  .option('--detach')
  .option(
    '--secret <NAME[=@FILE]>',
    "a secret of the original run, from a file (default: your environment's NAME) (repeatable)",
    collect,
    [],
  )
  .addOption(jsonOption())
  .action((id: string, o: RepeatOptions) => repeatCommand('retry', id, o));
program
  .command('rerun')
  .description('reproduce a recorded run: same commit, patch, config, datasets')
  .argument('<id>')
  .option('--detach')
  .option(
    '--secret <NAME[=@FILE]>',
    "a secret of the original run, from a file (default: your environment's NAME) (repeatable)",
    collect,
    [],
  )
  .addOption(jsonOption())
  .action((id: string, o: RepeatOptions) => repeatCommand('rerun', id, o));
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

const pool = program
  .command('pool')
  .description('the fleet: each slot, its state and lease; the queue')
  .addOption(jsonOption())
  .action(poolCommand);
pool
  .command('drain')
  .argument('<target>', 'host or slot id')
  .option('--reason <text>', 'why (shown in pool)', one('--reason'))
  .addOption(jsonOption())
  .action((target: string, options: { reason?: string; json?: boolean }) => drainCommand(target, true, options));
pool
  .command('undrain')
  .argument('<target>', 'host or slot id')
  .addOption(jsonOption())
  .action((target: string, options: { json?: boolean }) => drainCommand(target, false, options));
pool
  .command('repair')
  .description(
    'repair a stalled pool (its workflow tasks failing): reset it to its last good task and give back every signal since, except those it cannot read or that fail it again; prints what it dropped',
  )
  .addOption(jsonOption())
  .action(repairPoolCommand);

program
  .command('worker')
  .description("join this host's GPUs (or CPU slots) to the fleet")
  .option('--host <name>', 'name of this host in the fleet (default: EXPCTL_HOST or the hostname)', one('--host'))
  .option('--gpus <indexes>', 'only these GPUs, e.g. 0,2', indexList)
  .option(
    '--cpu-slots <n>',
    'offer N CPU slots instead of GPUs (without GPUs: half the cores, at least 2)',
    positiveInt('--cpu-slots'),
  )
  .option('--work-dir <dir>', 'worktrees, logs and artifacts (default: $EXPCTL_HOME/worker)', one('--work-dir'))
  .option('--runtime-tag <tag>', 'runtime tag this host offers (repeatable)', collect, [])
  .option(
    '--orphan-grace <seconds>',
    'how long a run outlives its worker before it is killed, waiting for a restarted worker (default 60)',
    positiveInt('--orphan-grace'),
  )
  .option(
    '--heartbeat <seconds>',
    `how often the worker reports to the pool (default ${DEFAULT_POOL_HEARTBEAT_MS / 1000}); the pool waits at least ${MISSED_HEARTBEATS_BEFORE_LOST} of these before it declares the host lost`,
    positiveInt('--heartbeat'),
  )
  .action(workerCommand);
program
  .command('orchestrator')
  .description('run the control worker (all workflows) against TEMPORAL_ADDRESS')
  .action(orchestratorCommand);
program
  .command('health')
  .description('latest fleet health check per host and GPU')
  .addOption(jsonOption())
  .action(healthCommand);
program
  .command('schedule')
  .description('Temporal Schedules of expctl')
  .command('ensure')
  .description('create the fleet health Schedule if missing')
  .action(scheduleEnsureCommand);
const auth = program.command('auth').description('credentials: who may submit, cancel, drain, register hosts');
auth
  .command('init')
  .description("create the fleet's issuer key and this user's admin credential where missing (expctl dev does this)")
  .addOption(jsonOption())
  .action(authInitCommand);
auth
  .command('issue')
  .description('issue a credential (needs the issuer key): roles submitter, operator, worker, admin, producer')
  .requiredOption('--name <name>', 'who holds it (a person, an agent, a worker host)', singleOption('--name'))
  .requiredOption('--role <role>', 'submitter, operator, worker, admin or producer', singleOption('--role'))
  .option('--out <file>', 'where to write it (mode 0600; default NAME.credential.json)', singleOption('--out'))
  .option('--expires-days <n>', 'valid for this many days (default: until revoked)', positiveInt('--expires-days'))
  .addOption(jsonOption())
  .action(authIssueCommand);
auth
  .command('revoke')
  .description('revoke a credential by id, or with --name every credential of that name issued so far')
  .argument('<credential>', 'credential id (cred-...), or a name with --name')
  .option('--name', 'the argument is a name')
  .addOption(jsonOption())
  .action(authRevokeCommand);
auth
  .command('whoami')
  .description('the identity and role this shell acts as')
  .addOption(jsonOption())
  .action(authWhoamiCommand);

program
  .command('setup')
  .description("register expctl's search attributes in the namespace (real clusters)")
  .action(setupCommand);

program
  .command('dev')
  .description('start the local stack: Temporal dev server + Web UI, orchestrator, one GPU worker')
  .option('--no-demo', 'do not run the example campaign after start')
  .option(
    '--cpu-slots <n>',
    'CPU slots for the local worker instead of GPUs (without GPUs: half the cores, at least 2)',
    positiveInt('--cpu-slots'),
  )
  .option('--no-worker', 'the control plane only (server, orchestrator): GPU hosts join with `expctl worker`')
  .option(
    '--listen <address>',
    'serve other hosts on this address of this host (0.0.0.0 for all of them); default loopback only, or EXPCTL_TEMPORAL_IP',
    one('--listen'),
  )
  .action((options: DevOptions) => devCommand(options));

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

program
  .command('mcp')
  .description(
    'an MCP server on stdio: run, batch, wait, show, history, best, suggest, cancel, logs as tools for agents',
  )
  .action(() => serveMcp());

program
  .command('schema')
  .description("the JSON Schema of a command's --json output (without NAME: the outputs there are)")
  .argument('[name]', 'an output: run, show, history, best, pool-drain, report-diff, ...')
  .addOption(jsonOption())
  .action(schemaCommand);

program
  .command('install-temporal')
  .description('make the pinned Temporal CLI available (build or download once, cached per user) and print its path')
  .action(() => installTemporalCommand());

program
  .command('promote')
  .description("promote a kept experiment's model through gates: integrity, holdout evaluation, approval, alias move")
  .argument('<experiment-id>')
  .requiredOption('--model <name>', 'model name', one('--model'))
  .option('--alias <alias>', 'alias to move: staging or production (default staging)', one('--alias'))
  .option('--artifact <path>', "the model file among the run's artifacts (default: its only one)", one('--artifact'))
  .option(
    '--threshold <x>',
    'relative regression allowed against the incumbent (default 0.01)',
    numberOption('--threshold', { min: 0 }),
  )
  .option('--approval', 'wait for `expctl approve` before moving the alias')
  .option(
    '--approval-timeout <duration>',
    'how long to wait for approval (default 24h): 90s, 30m, 1h, 2d',
    one('--approval-timeout'),
  )
  .option(
    '--eval-command <cmd>',
    "evaluation command (default: the run's own command with EXPCTL_EVALUATE=holdout)",
    one('--eval-command'),
  )
  .option('--detach', 'print the promotion ID and return')
  .addOption(jsonOption())
  .action(promoteCommand);
program
  .command('approve')
  .description('approve a promotion awaiting approval (operator or admin)')
  .argument('<promotion-id>')
  .option('--reason <text>', 'why', one('--reason'))
  .addOption(jsonOption())
  .action((id: string, options: { reason?: string; json?: boolean }) => decideCommand('approve', id, options));
program
  .command('reject')
  .description('reject a promotion awaiting approval (operator or admin)')
  .argument('<promotion-id>')
  .option('--reason <text>', 'why', one('--reason'))
  .addOption(jsonOption())
  .action((id: string, options: { reason?: string; json?: boolean }) => decideCommand('reject', id, options));
program
  .command('rollback')
  .description("move a model's alias back to the version it held before (operator or admin)")
  .argument('<model>')
  .requiredOption('--alias <alias>', 'staging or production', one('--alias'))
  .option('--reason <text>', 'why', one('--reason'))
  .addOption(jsonOption())
  .action(rollbackCommand);
program
  .command('models')
  .description('model versions, aliases and their evidence (holdout metric, incumbent, threshold, approver, rollbacks)')
  .argument('[model]')
  .addOption(jsonOption())
  .action(modelsCommand);
program
  .command('lineage')
  .description(
    'what made a dataset version, experiment, artifact or model version, and what it went into (from the catalog)',
  )
  .argument('<ref>', 'NAME@V (dataset version), an experiment ID, EXPERIMENT_ID:PATH (artifact) or model:NAME@V')
  .option('--upstream', 'only what made it: data, the run, the artifact')
  .option('--downstream', 'only what it went into: runs, artifacts, model versions and their aliases')
  .addOption(jsonOption())
  .action(lineageCommand);
program
  .command('promotion')
  .description("a promotion's state, stages and evidence")
  .argument('<promotion-id>')
  .addOption(jsonOption())
  .action(promotionShowCommand);
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

// Commander reports usage errors through exceptions so `run` can keep its exit-code contract.
const overrideExits = (command: Command): void => {
  command.exitOverride();
  command.commands.forEach(overrideExits);
};
overrideExits(program);

/** The arguments before `--` (after it, everything belongs to the training command). */
const ownArgs = (() => {
  const at = process.argv.indexOf('--');
  return at < 0 ? process.argv : process.argv.slice(0, at);
})();

// Every command finds the user's running stack from any directory (stack.ts); `mcp` does not: each
// of its tool calls is an `expctl` process of its own that looks when it runs.
if (process.argv[2] !== 'mcp') useStack();

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version are not errors; a malformed `run` request is a refusal (exit 2, the usual JSON).
    if (error.exitCode === 0) process.exitCode = EXIT_CODES.decided;
    else if (process.argv[2] === 'run') {
      await refuseRun(`invalid experiment request: ${error.message.replace(/^error: /, '')}`, {
        json: wantsJson({ json: ownArgs.includes('--json') }),
      });
    } else if (process.argv[2] === 'batch') {
      await refuseBatch(`invalid batch request: ${error.message.replace(/^error: /, '')}`, {
        json: wantsJson({ json: ownArgs.includes('--json') }),
      });
    } else {
      // Commander has said what is wrong on stderr; a JSON reader gets it as the usual error object.
      process.exitCode = EXIT_CODES.validation_failed;
      if (wantsJson({ json: ownArgs.includes('--json') }))
        printJson({ error: 'validation_failed', message: error.message.replace(/^error: /, '') });
    }
  } else {
    const { failureOf } = await import('./failure.js');
    const failure = failureOf(error);
    process.exitCode = failure.exitCode;
    console.error(`expctl: ${safeText(failure.message, { multiline: true })}`);
    // An agent reading JSON gets every error as one object too.
    if (wantsJson({ json: ownArgs.includes('--json') })) printJson({ error: failure.code, message: failure.message });
  }
}

// Long-running commands end by themselves. The others may hold gRPC connections that would keep
// the process alive, so they exit explicitly, but only once stdout and stderr are drained: a
// pipe takes 64 KiB at a time, and exiting earlier would cut the output off there.
if (!['dev', 'worker', 'orchestrator', 'codec-server', 'mcp'].includes(process.argv[2] ?? '')) {
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit();
}
