import type { Command } from 'commander';
import { jsonOption, lazy, one } from '../options.js';
import { numberOption } from '../parse.js';

/** The `expctl` commands of promotion: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/promotion.js');
const decideCommand = lazy(load, 'decideCommand');
const modelsCommand = lazy(load, 'modelsCommand');
const promoteCommand = lazy(load, 'promoteCommand');
const promotionShowCommand = lazy(load, 'promotionShowCommand');
const rollbackCommand = lazy(load, 'rollbackCommand');

export function declarePromotion(program: Command): void {
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
    .description(
      'model versions, aliases and their evidence (holdout metric, incumbent, threshold, approver, rollbacks)',
    )
    .argument('[model]')
    .addOption(jsonOption())
    .action(modelsCommand);
}

export function declarePromotionShow(program: Command): void {
  program
    .command('promotion')
    .description("a promotion's state, stages and evidence")
    .argument('<promotion-id>')
    .addOption(jsonOption())
    .action(promotionShowCommand);
}
