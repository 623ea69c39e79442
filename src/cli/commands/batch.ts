import { WorkflowFailedError, type Client } from '@temporalio/client';
import { batchHandle, batchState, submitBatchRequests, type BatchHandle } from '../../client/batches.js';
import { experimentHandle } from '../../client/experiments.js';
import { fleetSourceFor, shipToFleet } from '../../client/fleet-remote.js';
import { resolveSource, resolveVariants, SourceError } from '../../client/source.js';
import { DEFAULT_METRIC } from '../../domain/decision.js';
import { exitCodeFor } from '../../domain/experiment.js';
import { parseExperimentRequest, RequestValidationError, type ExperimentRequest } from '../../domain/request.js';
import { batchExitCode } from '../../domain/tournament.js';
import { MAX_BATCH_VARIANTS } from '../../domain/bounds.js';
import { fleetRemote } from '../../shared/settings.js';
import { connectClient } from '../../temporal/connection.js';
import type { BatchResult, BatchSnapshot } from '../../workflows/batch-state.js';
import { asRefusal } from '../refusal.js';
import { reportOnInterrupt } from '../interrupt.js';
import { CliError, printJson, safeText, wantsJson } from '../output.js';
import { parseBatchFlags, problemAsFlag, type RawBatchOptions } from '../parse.js';
import { followRuns } from '../progress.js';
import { requestInput } from '../run-request.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';

/** A batch refused before anything started: one JSON object, exit 2, as `run` refuses. */
export function refuseBatch(reason: string, options: { tag?: string; metric?: string; json: boolean }): void {
  const refusal = {
    batch_id: null,
    tag: options.tag ?? '',
    status: 'validation_failed',
    action: null,
    commit: null,
    winner: null,
    metric_name: options.metric ?? DEFAULT_METRIC.name,
    reason,
    children: [],
  };
  if (options.json) printJson(refusal);
  else console.log(safeText(`batch refused: ${reason}`));
  process.exitCode = EXIT_CODES.validation_failed;
}

function printBatch(result: BatchResult, json: boolean): void {
  if (json) return printJson(result);
  const lines = [
    `${result.batch_id}: ${result.action} → ${result.commit}`,
    `  ${result.reason}`,
    `  ${result.metric_name} best: ${result.best ?? '-'}   consecutive crashes: ${result.consecutive_crashes}${result.should_abort ? '   SHOULD ABORT: rethink before the next batch' : ''}`,
    ...result.children.map(
      (c) =>
        `  ${c.experiment_id}: ${c.status}${c.decision ? ` → ${c.decision}` : ''}${c.rule ? ` (${c.rule})` : ''}  ${c.metric_name} ${c.metric ?? '-'}${c.near_miss ? '  near miss' : ''}`,
    ),
  ];
  console.log(lines.map((line) => safeText(line)).join('\n'));
}

/** One progress line per variant, numbered as its experiment ID is (`-v1`, `-v2`, …). */
function followVariants(client: Client, batchId: string, members: string[], json: boolean): () => void {
  const runs = members.map((experimentId, index) => ({
    handle: experimentHandle(client, experimentId),
    label: `v${index + 1}`,
    labels: { batch_id: batchId, variant: index + 1 },
  }));
  return followRuns(runs, { tty: !json && process.stderr.isTTY === true });
}

/** Waits for a batch's decision with each variant's progress; the exit code follows `run`'s (batchExitCode). */
export async function awaitBatch(client: Client, handle: BatchHandle, json: boolean, members: string[]): Promise<void> {
  let result: BatchResult;
  const stopReporting = reportOnInterrupt(client, { kind: 'batch', id: handle.workflowId }, { json });
  // Said once, on stderr: what is awaited, and that Ctrl-C leaves it running.
  const resume = `expctl wait ${handle.workflowId}`;
  if (json) process.stderr.write(`${JSON.stringify({ event: 'waiting', batch_id: handle.workflowId, resume })}\n`);
  else console.error(`expctl: waiting for ${handle.workflowId}; Ctrl-C leaves it running (\`${resume}\` picks it up)`);
  const stopProgress = followVariants(client, handle.workflowId, members, json);
  try {
    result = await handle.result();
  } catch (error) {
    const refusal = asRefusal(error);
    if (refusal !== error) throw refusal;
    if (error instanceof WorkflowFailedError)
      throw new CliError(`batch ${handle.workflowId} failed inside expctl: ${error.cause?.message ?? error.message}`);
    throw error;
  } finally {
    stopProgress();
    stopReporting();
  }
  printBatch(result, json);
  process.exitCode = batchExitCode(result.children.map((child) => exitCodeFor(child.status)));
}

/** The training command: what follows `--` (commander mixes it into the variadic arguments). */
function splitAtDashes(args: string[]): { commits: string[]; command: string[] } {
  const dashes = process.argv.indexOf('--');
  const command = dashes < 0 ? [] : process.argv.slice(dashes + 1);
  return { commits: args.slice(0, args.length - command.length), command };
}

/** `expctl batch`: every flag and every variant checked before anything is submitted. */
export async function batchCommand(args: string[], raw: RawBatchOptions): Promise<void> {
  const json = wantsJson(raw);
  const { flags, problems } = parseBatchFlags(raw);
  const refuse = (reason: string) => refuseBatch(reason, { tag: flags.tag, metric: flags.metric, json });
  if (problems.length > 0) return refuse(`invalid batch request: ${problems.join('; ')}`);
  const { commits, command } = splitAtDashes(args);
  // Counted before each commit is resolved: resolving thousands would take minutes to say no.
  if (commits.length > MAX_BATCH_VARIANTS)
    return refuse(`invalid batch request: a batch holds at most ${MAX_BATCH_VARIANTS} commits, not ${commits.length}`);
  let base: { repo: string; commit: string };
  let variants: { commit: string; subject: string }[];
  try {
    base = await resolveSource(flags.repo, flags.base ?? 'HEAD');
    variants = await resolveVariants(base.repo, base.commit, commits);
  } catch (error) {
    if (!(error instanceof SourceError)) throw error;
    return refuse(error.message);
  }
  const template = requestInput({ ...flags, hypothesis: undefined }, base, command);
  const remote = fleetRemote();
  const variantSources = variants.map((v) => ({ repo: base.repo, commit: v.commit }));
  // Parsed once, here at the boundary, as they will be submitted: naming the fleet remote, if there is one.
  let requests: ExperimentRequest[];
  try {
    requests = variants.map((v, index) =>
      parseExperimentRequest({
        ...template,
        ...fleetSourceFor(variantSources[index]!, remote),
        hypothesis: flags.hypothesis ?? v.subject,
        idempotencyKey: undefined,
      }),
    );
  } catch (error) {
    if (!(error instanceof RequestValidationError)) throw error;
    return refuse(`invalid batch request: ${error.problems.map(problemAsFlag).join('; ')}`);
  }
  try {
    // Only valid requests ship their commits to the fleet remote (EXPCTL_FLEET_REMOTE), if there is one.
    for (const source of variantSources) await shipToFleet(source, remote);
  } catch (error) {
    if (!(error instanceof SourceError)) throw error;
    return refuse(error.message);
  }
  const client = await connectClient();
  let submitted;
  try {
    submitted = await submitBatchRequests(client, requests, {
      base: base.commit,
      ...(flags.deadlineSeconds !== undefined ? { deadlineSeconds: flags.deadlineSeconds } : {}),
      ...(flags.idempotencyKey ? { idempotencyKey: flags.idempotencyKey } : {}),
      ...(flags.priority !== undefined ? { priority: flags.priority } : {}),
    });
  } catch (error) {
    if (!(error instanceof RequestValidationError)) throw error;
    return refuse(error.message);
  }
  if (raw.detach) {
    if (json) printJson({ batch_id: submitted.batchId, status: 'submitted', children: submitted.members });
    else console.log(submitted.batchId);
    return;
  }
  if (!json) console.error(`expctl: submitted ${submitted.batchId} (${submitted.members.join(', ')})`);
  await awaitBatch(client, submitted.handle, json, submitted.members);
}

async function batchSnapshotOf(client: Client, batchId: string): Promise<BatchSnapshot> {
  const snapshot = await batchState(client, batchId);
  if (!snapshot) throw new CliError(`no such batch ${JSON.stringify(safeText(batchId))}`, EXIT_CODES.validation_failed);
  return snapshot;
}

/** `expctl wait BATCH_ID`. */
export async function waitBatchCommand(batchId: string, json: boolean): Promise<void> {
  const client = await connectClient();
  const snapshot = await batchSnapshotOf(client, batchId);
  const members = snapshot.members.map((member) => member.experimentId);
  await awaitBatch(client, batchHandle(client, batchId), json, members);
}

/** `expctl show BATCH_ID`: the batch's state and each experiment's, as far as they have come. */
export async function showBatchCommand(batchId: string, json: boolean): Promise<void> {
  const client = await connectClient();
  const b = await batchSnapshotOf(client, batchId);
  const shown = {
    batch_id: b.batchId,
    tag: b.tag,
    base: b.base,
    status: b.status,
    deadline: b.deadline,
    winner: b.winner,
    children: b.members.map((m) => ({ experiment_id: m.experimentId, commit: m.commit, ended: m.ended })),
  };
  if (json) return printJson(shown);
  const lines = [
    `${shown.batch_id}  [${shown.status}]  tag ${shown.tag}  base ${shown.base.slice(0, 12)}${shown.deadline ? `  deadline ${shown.deadline}` : ''}`,
    `  winner: ${shown.winner ?? '-'}`,
    ...shown.children.map((c) => `  ${c.experiment_id}  ${c.commit.slice(0, 12)}  ${c.ended ?? 'not ended'}`),
  ];
  console.log(lines.map((line) => safeText(line)).join('\n'));
}
