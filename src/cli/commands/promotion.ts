import { parseDuration } from '../../domain/duration.js';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { decidePromotion, promotionState, rollbackModel, startPromotion } from '../../client/promotions.js';
import {
  ALIASES,
  DEFAULT_ALIAS,
  DEFAULT_APPROVAL_TIMEOUT_MS,
  isPromotionId,
  MODEL_NAME_PATTERN,
  MODEL_NAME_TEXT,
  promotionExitCode,
} from '../../domain/promotion.js';
import { connectClient } from '../../temporal/connection.js';
import type { PromotionResult } from '../../workflows/promotion-definitions.js';
import { openCatalog } from '../catalog-view.js';
import { CliError, formatTable, printJson, safeText, wantsJson } from '../output.js';
import { splitCommandLine } from '../parse.js';
import { asRefusal } from '../refusal.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';

/** Exit code of a promotion refused before it started (like a refused run). */
const REFUSED_EXIT_CODE = EXIT_CODES.validation_failed;

function checkModel(model: string): string {
  if (!MODEL_NAME_PATTERN.test(model))
    throw new CliError(`model name ${JSON.stringify(safeText(model))} must be ${MODEL_NAME_TEXT}`);
  return model;
}
function checkAlias(alias: string): string {
  if (!(ALIASES as readonly string[]).includes(alias))
    throw new CliError(`--alias ${JSON.stringify(safeText(alias))}: one of ${ALIASES.join(', ')}`);
  return alias;
}
/** A refusal or failure, as the CLI's error (the top level prints it, as JSON too with --json). */
function fail(error: string, message: string, exitCode: number): never {
  throw new CliError(message, exitCode, error);
}

function printResult(result: PromotionResult, options: { json?: boolean }): void {
  process.exitCode = promotionExitCode(result.status);
  if (wantsJson(options)) return printJson(result);
  console.log(safeText(`${result.promotion_id}: ${result.status} (${result.code}): ${result.reason}`));
}

export interface PromoteOptions {
  model: string;
  alias?: string;
  artifact?: string;
  threshold?: number;
  approval?: boolean;
  approvalTimeout?: string;
  evalCommand?: string;
  detach?: boolean;
  json?: boolean;
}

/** `expctl promote EXPERIMENT_ID --model NAME ...`: refused before anything runs when the candidate does not qualify. */
export async function promoteCommand(experimentId: string, options: PromoteOptions): Promise<void> {
  const model = checkModel(options.model);
  const alias = checkAlias(options.alias ?? DEFAULT_ALIAS);
  let approvalTimeoutMs = DEFAULT_APPROVAL_TIMEOUT_MS;
  if (options.approvalTimeout !== undefined) {
    try {
      approvalTimeoutMs = parseDuration(options.approvalTimeout);
    } catch (error) {
      throw new CliError(`--approval-timeout: ${(error as Error).message}`);
    }
  }
  const evalCommand =
    options.evalCommand === undefined ? undefined : splitCommandLine('--eval-command', options.evalCommand);
  const client = await connectClient();
  const started = await startPromotion(client, await openCatalog(client), {
    experimentId,
    model,
    alias,
    ...(options.artifact !== undefined ? { artifact: options.artifact } : {}),
    ...(options.threshold !== undefined ? { threshold: options.threshold } : {}),
    approval: options.approval === true,
    approvalTimeoutMs,
    ...(evalCommand !== undefined ? { evalCommand } : {}),
  });
  if ('refusal' in started) fail(started.refusal.code, `${experimentId}: ${started.refusal.reason}`, REFUSED_EXIT_CODE);
  const { promotionId, handle } = started;
  if (options.detach) {
    if (wantsJson(options)) return printJson({ promotion_id: promotionId, model, alias, experiment_id: experimentId });
    console.log(promotionId);
    return;
  }
  if (!wantsJson(options)) console.error(`expctl: ${promotionId}: promoting ${experimentId} to ${model}@${alias} ...`);
  let result: PromotionResult;
  try {
    result = await handle.result();
  } catch (error) {
    throw asRefusal(error);
  }
  printResult(result, options);
}

/** `expctl approve ID` / `expctl reject ID [--reason]`: signed updates, operator or admin. */
export async function decideCommand(
  decision: 'approve' | 'reject',
  promotionId: string,
  options: { reason?: string; json?: boolean },
): Promise<void> {
  if (!isPromotionId(promotionId))
    throw new CliError(`${safeText(promotionId)} is not a promotion ID (expctl-promotion-...)`);
  const client = await connectClient();
  const content = { decision, ...(options.reason !== undefined ? { reason: options.reason } : {}) };
  let answer;
  try {
    answer = await decidePromotion(client, promotionId, content);
  } catch (error) {
    const refusal = asRefusal(error);
    if (refusal !== error) throw refusal;
    if (error instanceof WorkflowNotFoundError) throw new CliError(`no promotion ${promotionId}`);
    if (error instanceof WorkflowUpdateFailedError) {
      const cause = error.cause;
      throw new CliError(
        `${cause instanceof ApplicationFailure && cause.type ? `${cause.type}: ` : ''}${cause?.message ?? error.message}`,
      );
    }
    throw error;
  }
  const out = { promotion_id: promotionId, decision, status: answer.status, decided_by: answer.decidedBy };
  if (wantsJson(options)) return printJson(out);
  console.log(safeText(`${promotionId}: ${decision}d by ${answer.decidedBy}; now ${answer.status}`));
}

/** `expctl rollback NAME --alias A [--reason]`: signed, operator or admin. */
export async function rollbackCommand(
  model: string,
  options: { alias: string; reason?: string; json?: boolean },
): Promise<void> {
  checkModel(model);
  const alias = checkAlias(options.alias);
  const client = await connectClient();
  let result;
  try {
    result = await rollbackModel(client, {
      model,
      alias,
      ...(options.reason !== undefined ? { reason: options.reason } : {}),
    });
  } catch (error) {
    throw asRefusal(error);
  }
  if (!result.rolled_back) fail(result.code ?? 'promotion.rollback_failed', result.reason, REFUSED_EXIT_CODE);
  if (wantsJson(options)) return printJson(result);
  console.log(safeText(result.reason));
}

/** `expctl models [NAME] [--json]`. */
export async function modelsCommand(model: string | undefined, options: { json?: boolean }): Promise<void> {
  const reports = await (await openCatalog()).models(model === undefined ? undefined : checkModel(model));
  if (wantsJson(options)) return printJson(model ? reports[0] : { models: reports });
  if (reports.length === 0) return console.log('no model has been promoted yet');
  for (const report of reports) {
    const aliases = Object.entries(report.aliases).map(([alias, version]) => `${alias}=v${version}`);
    console.log(safeText(`${report.model}  ${aliases.join(' ') || '(no alias)'}`));
    console.log(
      formatTable(
        ['version', 'experiment', 'holdout', 'incumbent', 'threshold', 'approved by', 'created'],
        report.versions.map((v) => [
          `v${v.version}`,
          v.experiment_id,
          v.holdout_metric === null ? '-' : `${v.metric_name} ${v.holdout_metric}`,
          v.incumbent_version === null ? '-' : `v${v.incumbent_version} (${v.incumbent_metric ?? '-'})`,
          v.threshold,
          v.approved_by ?? '-',
          v.created_at,
        ]),
      ),
    );
    for (const move of report.alias_history.filter((m) => m.kind === 'rollback'))
      console.log(
        safeText(
          `  rollback of ${move.alias}: v${move.previous_version} → v${move.version} by ${move.by} at ${move.at}${move.reason ? ` (${move.reason})` : ''}`,
        ),
      );
    const blocked = report.promotions.filter((p) => p.status !== 'promoted');
    for (const p of blocked)
      console.log(safeText(`  ${p.promotion_id}: ${p.status}${p.code ? ` (${p.code})` : ''} from ${p.experiment_id}`));
  }
}

/** `expctl promotion ID`: the live state (query) or, once the workflow is gone, the catalog's record. */
export async function promotionShowCommand(id: string, options: { json?: boolean }): Promise<void> {
  if (!isPromotionId(id)) throw new CliError(`${safeText(id)} is not a promotion ID (expctl-promotion-...)`);
  const client = await connectClient();
  const live = await promotionState(client, id);
  const catalog = await openCatalog(client);
  const record = await catalog.promotion(id);
  if (!live && !record) throw new CliError(`no promotion ${id} in Temporal or in the catalog`);
  const audit = await catalog.auditTrail(id);
  const state = live ?? record!;
  if (wantsJson(options)) return printJson({ ...(live ? { live } : {}), ...(record ? { record } : {}), audit });
  console.log(safeText(`${id}: ${state.status}${state.code ? ` (${state.code})` : ''}`));
  console.log(
    safeText(`  ${state.model}@${state.alias} from ${state.experimentId}; requested by ${state.requestedBy}`),
  );
  for (const stage of state.stages)
    console.log(
      safeText(`  ${stage.name.padEnd(10)} ${stage.status.padEnd(8)} ${stage.code ?? ''} ${stage.note ?? ''}`),
    );
  if (state.reason) console.log(safeText(`  reason: ${state.reason}`));
  for (const entry of audit)
    console.log(
      safeText(
        `  audit: ${entry.at} ${entry.action} by ${entry.actor ?? '?'} (${entry.role ?? '?'}) ${entry.allowed ? 'allowed' : 'refused'}`,
      ),
    );
}
