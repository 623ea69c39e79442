import path from 'node:path';
import { WorkflowFailedError, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { resolveSource, SourceError } from '../../client/source.js';
import { submitExperiment, type ExperimentHandle } from '../../client/experiments.js';
import { exitCodeFor, isTerminal, type ExperimentResult } from '../../domain/experiment.js';
import { RequestValidationError, type ExperimentRequestInput } from '../../domain/request.js';
import { queueOrder } from '../../domain/placement.js';
import { killLimitSeconds } from '../../domain/limits.js';
import { CONTROL_TASK_QUEUE, hostTaskQueue, POOL_WORKFLOW_ID } from '../../shared/constants.js';
import { connectClient } from '../../temporal/connection.js';
import { experimentStateQuery, poolStateQuery } from '../../workflows/definitions.js';
import type { ExperimentSnapshot } from '../../workflows/experiment-state.js';
import { readLogWorkflow } from '../../workflows/read-log.js';
import { existingCatalog } from '../catalog-file.js';
import { CliError, formatTable, printJson, wantsJson } from '../output.js';
import { followProgress } from '../progress.js';

export interface RunOptions {
  tag?: string;
  hypothesis?: string;
  category?: string;
  description?: string;
  repo?: string;
  commit?: string;
  config?: string;
  dataset: string[];
  checkpoint?: string;
  gpuClass?: string;
  gpuMem?: string;
  runtimeTag: string[];
  timeBudget?: string;
  timeout?: string;
  metric?: string;
  maximize?: boolean;
  idempotencyKey?: string;
  priority?: string;
  maxReplacements?: string;
  env: string[];
  detach?: boolean;
  json?: boolean;
}

const num = (raw: string | undefined) => (raw === undefined ? undefined : Number(raw));

/** A refusal before anything was submitted, in the same shape an agent reads for every run. */
function refusal(tag: string | undefined, reason: string, metricName: string): ExperimentResult {
  return {
    experiment_id: null,
    tag: tag ?? '',
    status: 'validation_failed',
    decision: null,
    action: null,
    metric_name: metricName,
    metric: null,
    best: null,
    delta: null,
    near_miss: false,
    consecutive_crashes: 0,
    should_abort: false,
    reason,
    gpu: null,
    worker: null,
    rule: null,
  };
}

function printResult(result: ExperimentResult, json: boolean): void {
  if (json) return printJson(result);
  const lines = [
    `${result.experiment_id ?? '(not submitted)'}: ${result.status}${result.decision ? ` → ${result.decision} (${result.action})` : ''}`,
    `  ${result.metric_name}: ${result.metric ?? '-'}   best: ${result.best ?? '-'}   delta: ${result.delta ?? '-'}${result.near_miss ? '   (near miss)' : ''}`,
    `  consecutive crashes: ${result.consecutive_crashes}${result.should_abort ? '   SHOULD ABORT: rethink before the next run' : ''}`,
    `  reason: ${result.reason}`,
    `  gpu: ${result.gpu ?? '-'}   worker: ${result.worker ?? '-'}`,
  ];
  console.log(lines.join('\n'));
}

/** Waits for the result with progress; sets the exit code from the terminal state (BRIEF §4). */
async function awaitResult(handle: ExperimentHandle, json: boolean): Promise<void> {
  const stopProgress = followProgress(handle, { tty: !json && process.stderr.isTTY === true });
  try {
    const result = await handle.result();
    stopProgress();
    printResult(result, json);
    process.exitCode = exitCodeFor(result.status);
  } catch (error) {
    stopProgress();
    if (error instanceof WorkflowFailedError) throw new CliError(`experiment ${handle.workflowId} failed inside expctl: ${error.cause?.message ?? error.message}`);
    throw error;
  }
}

export async function runCommand(command: string[], options: RunOptions): Promise<void> {
  const json = wantsJson(options);
  const metricName = options.metric ?? 'val_bpb';
  let source: { repo: string; commit: string };
  try {
    source = await resolveSource(options.repo, options.commit);
  } catch (error) {
    if (!(error instanceof SourceError)) throw error;
    printResult(refusal(options.tag, error.message, metricName), json);
    process.exitCode = 2;
    return;
  }
  const input: ExperimentRequestInput = {
    tag: options.tag as string,
    hypothesis: options.hypothesis as string,
    category: options.category as never,
    description: options.description,
    command: command.length > 0 ? command : undefined,
    repo: source.repo,
    commit: source.commit,
    configPath: options.config ? (path.isAbsolute(options.config) || options.config.startsWith('.') ? path.relative(source.repo, path.resolve(options.config)) : options.config) : undefined,
    datasets: options.dataset,
    checkpoint: options.checkpoint,
    requirements: { acceleratorClass: options.gpuClass ?? 'any', gpuMemoryMb: num(options.gpuMem) ?? 0, runtimeTags: options.runtimeTag },
    timeBudgetSeconds: num(options.timeBudget),
    timeoutSeconds: num(options.timeout),
    metric: options.metric || options.maximize ? { name: metricName, ...(options.maximize ? { direction: 'maximize' as const } : {}) } : undefined,
    idempotencyKey: options.idempotencyKey,
    maxReplacements: num(options.maxReplacements),
    env: Object.fromEntries(options.env.map((pair) => {
      const at = pair.indexOf('=');
      return at < 0 ? [pair, ''] : [pair.slice(0, at), pair.slice(at + 1)];
    })),
  };
  const client = await connectClient();
  let submitted;
  try {
    submitted = await submitExperiment(client, input, { priority: num(options.priority) });
  } catch (error) {
    if (!(error instanceof RequestValidationError)) throw error;
    printResult(refusal(options.tag, error.message, metricName), json);
    process.exitCode = 2;
    return;
  }
  if (options.detach) {
    if (json) printJson({ experiment_id: submitted.experimentId, status: 'submitted' });
    else console.log(submitted.experimentId);
    return;
  }
  if (!json) console.error(`expctl: submitted ${submitted.experimentId}`);
  await awaitResult(submitted.handle, json);
}

function handleFor(client: Client, id: string): ExperimentHandle {
  return client.workflow.getHandle(id);
}

async function snapshotOf(client: Client, id: string): Promise<ExperimentSnapshot> {
  try {
    return await handleFor(client, id).query(experimentStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new CliError(`no experiment ${id}`);
    throw error;
  }
}

/** 1-based position in the pool's queue (priority, then FIFO), or null when not waiting. */
async function queuePositionOf(client: Client, id: string): Promise<{ position: number; length: number } | null> {
  const pool = await client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery).catch(() => undefined);
  if (!pool) return null;
  const ordered = [...pool.queue].sort(queueOrder);
  const index = ordered.findIndex((request) => request.experimentId === id);
  return index < 0 ? null : { position: index + 1, length: ordered.length };
}

export async function waitCommand(id: string, options: { json?: boolean }): Promise<void> {
  const client = await connectClient();
  await snapshotOf(client, id);
  await awaitResult(handleFor(client, id), wantsJson(options));
}

export async function showCommand(id: string, options: { json?: boolean }): Promise<void> {
  const client = await connectClient();
  const record = existingCatalog()?.get(id);
  let snapshot: ExperimentSnapshot | undefined;
  try {
    snapshot = await snapshotOf(client, id);
  } catch (error) {
    // The catalog outlives Temporal's retention: a record alone is still an answer.
    if (!(error instanceof CliError) || !record) throw error;
  }
  const queuePosition = snapshot?.status === 'queued' ? await queuePositionOf(client, id) : null;
  if (wantsJson(options)) return printJson({ ...(snapshot ?? { experimentId: id }), queuePosition, record: record ?? null });
  if (!snapshot) {
    console.log(`${id}  [${record!.status}]  (from the catalog; the workflow is past Temporal's retention)`);
    console.log(JSON.stringify(record, null, 2));
    return;
  }
  const r = snapshot.request;
  console.log(`${snapshot.experimentId}  [${snapshot.status}]  tag ${snapshot.tag}  category ${r.category}`);
  if (queuePosition !== null) console.log(`  queued: position ${queuePosition.position} of ${queuePosition.length} waiting for a lease`);
  console.log(`  hypothesis: ${r.hypothesis}`);
  console.log(`  commit:     ${r.commit}  (${r.repo})`);
  console.log(`  command:    ${JSON.stringify(r.command)}   budget ${r.timeBudgetSeconds}s, killed after ${killLimitSeconds(r)}s`);
  if (snapshot.validation?.patch) console.log(`  patch:      ${snapshot.validation.patch.files.length} file(s), ${snapshot.validation.patch.bytes} bytes, sha256 ${snapshot.validation.patch.sha256.slice(0, 12)}`);
  if (snapshot.placement) console.log(`  placement:  ${snapshot.placement.slotId} (${snapshot.placement.acceleratorClass}): ${snapshot.placement.why}; policy ${snapshot.placement.policy}; waited ${(snapshot.placement.queuedMs / 1000).toFixed(1)}s`);
  if (record?.environment) console.log(`  env:        ${Object.entries(record.environment.software).map(([k, v]) => `${k} ${v}`).join(', ')}; lockfiles ${Object.keys(record.environment.lockfiles).join(', ') || '-'}`);
  if (snapshot.training?.metrics) console.log(`  metrics:    ${Object.entries(snapshot.training.metrics).map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (record?.artifacts.length) console.log(`  artifacts:  ${record.artifacts.map((a) => `${a.path} (${a.bytes} B, ${a.sha256.slice(0, 12)})`).join(', ')}`);
  if (snapshot.decision) console.log(`  decision:   ${snapshot.decision.decision ?? '-'} (${snapshot.decision.action ?? 'no action'}), best ${snapshot.decision.best ?? '-'}, compared with ${snapshot.decision.comparedWith.experimentId ?? 'nothing (first in its group)'}`);
  if (snapshot.reason) console.log(`  reason:     ${snapshot.reason}`);
  if (record?.originId) console.log(`  ${record.originKind} of:  ${record.originId}`);
  console.log('  timeline:');
  console.log(formatTable(['at', 'status', 'note'], snapshot.timeline.map((t) => [t.at, t.status, t.note ?? ''])).replace(/^/gm, '    '));
}

export async function logsCommand(id: string, options: { follow?: boolean }): Promise<void> {
  const client = await connectClient();
  let offset = 0;
  for (;;) {
    const snapshot = await snapshotOf(client, id);
    if (snapshot.worker) {
      for (;;) {
        const chunk = await client.workflow.execute(readLogWorkflow, {
          workflowId: `logs-${id}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
          taskQueue: CONTROL_TASK_QUEUE,
          args: [{ hostQueue: hostTaskQueue(snapshot.worker), experimentId: id, offset, maxBytes: 1 << 20 }],
        });
        process.stdout.write(chunk.text);
        offset = chunk.nextOffset;
        if (chunk.nextOffset >= chunk.size) break;
      }
    } else if (!options.follow || isTerminal(snapshot.status)) {
      console.error(`expctl: ${id} has no log (status ${snapshot.status}: it never started training)`);
    }
    if (!options.follow || isTerminal(snapshot.status)) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export async function cancelCommand(id: string, options: { json?: boolean }): Promise<void> {
  const client = await connectClient();
  const before = await snapshotOf(client, id);
  if (isTerminal(before.status)) throw new CliError(`${id} already ended (${before.status}); nothing to cancel`);
  const handle = handleFor(client, id);
  await handle.cancel();
  if (!wantsJson(options)) console.error(`expctl: cancel requested for ${id} (was ${before.status}); waiting for its processes to stop ...`);
  await awaitResult(handle, wantsJson(options));
  // The cancel did what was asked; exit 5 is for `run`/`wait` callers who were canceled.
  if (process.exitCode === 5) process.exitCode = 0;
}
