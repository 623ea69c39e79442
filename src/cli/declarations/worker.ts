import type { Command } from 'commander';
import { DEFAULT_POOL_HEARTBEAT_MS, MISSED_HEARTBEATS_BEFORE_LOST } from '../../domain/fleet.js';
import { DEFAULT_FENCING_SECONDS } from '../../domain/limits.js';
import { collect, indexList, lazy, one, positiveInt } from '../options.js';

/** The `expctl` commands of worker: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/worker.js');
const orchestratorCommand = lazy(load, 'orchestratorCommand');
const workerCommand = lazy(load, 'workerCommand');

export function declareWorkers(program: Command): void {
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
      '--fencing-time <seconds>',
      `how long a run goes on when this worker cannot confirm its lease with the pool (cut off, frozen, killed) before its supervisor stops it; the pool re-places a lost run only after it (default: EXPCTL_FENCING_SECONDS or ${DEFAULT_FENCING_SECONDS})`,
      positiveInt('--fencing-time'),
    )
    .option(
      '--heartbeat <seconds>',
      `how often the worker heartbeats to its host liveness workflow and looks at the pool (default ${DEFAULT_POOL_HEARTBEAT_MS / 1000}); the pool waits at least ${MISSED_HEARTBEATS_BEFORE_LOST} of these before it declares the host lost`,
      positiveInt('--heartbeat'),
    )
    .action(workerCommand);
  program
    .command('orchestrator')
    .description('run the control worker (all workflows) against TEMPORAL_ADDRESS')
    .action(orchestratorCommand);
}
