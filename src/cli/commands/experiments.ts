import { asRefusal } from '../refusal.js';
import type { AttemptRecord } from '../../domain/attempts.js';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { resolveSource, SourceError } from '../../client/source.js';
import { fleetSourceFor, shipToFleet } from '../../client/fleet-remote.js';
import { fleetRemote } from '../../shared/settings.js';
import {
  cancelExperiment,
  experimentHandle,
  experimentState,
  NotAnExperimentError,
  submitRequest,
  type ExperimentHandle,
  trainingEnvironment,
} from '../../client/experiments.js';
import { poolState } from '../../client/fleet.js';
import { isBatchId } from '../../client/batches.js';
import { malformedIdProblem } from '../../domain/bounds.js';
import { showBatchCommand, waitBatchCommand } from './batch.js';
import { exitCodeFor, type RunTimings, isTerminal, type ExperimentResult } from '../../domain/experiment.js';
import { DEFAULT_METRIC } from '../../domain/decision.js';
import { parseExperimentRequest, RequestValidationError, type ExperimentRequest } from '../../domain/request.js';
import { poolLoads } from '../../domain/fair-share.js';
import { servingOrder, type PlacementRecord } from '../../domain/placement.js';
import { killLimitSeconds } from '../../domain/limits.js';
import { telemetryLines, telemetryWarnings } from '../../domain/telemetry.js';
import { connectClient } from '../../temporal/connection.js';
import type { ExperimentSnapshot } from '../../workflows/experiment-state.js';
import { openCatalog } from '../catalog-view.js';
import { CliError, formatTable, printJson, safeJson, safeText, wantsJson } from '../output.js';
import { parseRunFlags, problemAsFlag, type RawRunOptions } from '../parse.js';
import { requestInput } from '../run-request.js';
import { followProgress } from '../progress.js';
import { reportOnInterrupt } from '../interrupt.js';
import { parseDatasetVersionWorkflowId } from '../../domain/datasets.js';
import { dataShowCommand } from './data.js';
import { promotionShowCommand } from './promotion.js';
import { isPromotionId } from '../../domain/promotion.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';
import { storeOfObjectUri } from '../../store/object-uri.js';
import { openStore } from '../../store/open.js';
import { isStoreError } from '../../store/store.js';

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
    `  gpu: ${result.gpus?.join(',') ?? result.gpu ?? '-'}   worker: ${result.worker ?? '-'}`,
  ];
  console.log(lines.map((line) => safeText(line)).join('\n'));
}

/** Waits for the result with progress; sets the exit code from the terminal state (BRIEF §4). */
async function awaitResult(client: Client, handle: ExperimentHandle, json: boolean): Promise<void> {
  const stopProgress = followProgress(handle, { tty: !json && process.stderr.isTTY === true });
  const awaited = { kind: 'experiment', id: handle.workflowId } as const;
  const stopReporting = reportOnInterrupt(client, awaited, { json, before: stopProgress });
  try {
    const result = await handle.result();
    stopProgress();
    printResult(result, json);
    process.exitCode = exitCodeFor(result.status);
  } catch (error) {
    stopProgress();
    const refusal = asRefusal(error);
    if (refusal !== error) throw refusal;
    if (error instanceof WorkflowFailedError)
      throw new CliError(
        `experiment ${handle.workflowId} failed inside expctl: ${error.cause?.message ?? error.message}`,
      );
    throw error;
  } finally {
    stopReporting();
  }
}

/** Prints a refusal of `run` (nothing was submitted) and sets exit code 2. */
export function refuseRun(reason: string, options: { tag?: string; metric?: string; json: boolean }): void {
  printResult(refusal(options.tag, reason, options.metric ?? DEFAULT_METRIC.name), options.json);
  process.exitCode = EXIT_CODES.validation_failed;
}

/** `expctl run`: every flag checked, then the request as a whole, before anything is submitted. */
export async function runCommand(command: string[], raw: RawRunOptions): Promise<void> {
  const json = wantsJson(raw);
  const { flags, problems } = parseRunFlags(raw);
  const refuse = (reason: string) => refuseRun(reason, { tag: flags.tag, metric: flags.metric, json });
  if (problems.length > 0) return refuse(`invalid experiment request: ${problems.join('; ')}`);
  let source: { repo: string; commit: string };
  try {
    source = await resolveSource(flags.repo, flags.commit);
  } catch (error) {
    if (!(error instanceof SourceError)) throw error;
    return refuse(error.message);
  }
  // Parsed once, here at the boundary, as it will be submitted: naming the fleet remote, if there is one.
  let request: ExperimentRequest;
  try {
    request = parseExperimentRequest(requestInput(flags, source, command, fleetSourceFor(source, fleetRemote())));
  } catch (error) {
    if (!(error instanceof RequestValidationError)) throw error;
    return refuse(`invalid experiment request: ${error.problems.map(problemAsFlag).join('; ')}`);
  }
  try {
    // Only a valid request ships its commit to the fleet remote (EXPCTL_FLEET_REMOTE), if there is one.
    await shipToFleet(source, fleetRemote());
  } catch (error) {
    if (!(error instanceof SourceError)) throw error;
    return refuse(error.message);
  }
  const client = await connectClient();
  let submitted;
  try {
    submitted = await submitRequest(client, request, { priority: flags.priority });
  } catch (error) {
    if (!(error instanceof RequestValidationError)) throw error;
    return refuse(error.message);
  }
  if (raw.detach) {
    if (json) printJson({ experiment_id: submitted.experimentId, status: 'submitted' });
    else console.log(submitted.experimentId);
    return;
  }
  if (!json) console.error(`expctl: submitted ${submitted.experimentId}`);
  await awaitResult(client, submitted.handle, json);
}

/** An ID as a message may quote it: escaped, and not at all when it is long (it may be 10 KB of junk). */
function quotedId(id: string): string {
  return id.length <= 80 ? JSON.stringify(safeText(id)) : `(an ID of ${id.length} characters)`;
}

/** Refuses (exit 2) an ID that no experiment can have, before anything is asked of Temporal. */
export function checkExperimentId(id: string): void {
  const problem = malformedIdProblem(id);
  if (problem) throw new CliError(`no such experiment ${quotedId(id)}: ${problem}`, EXIT_CODES.validation_failed);
}

/** What the ID names instead of an experiment, and where to look at it. */
const OTHER_KINDS: Record<string, string> = {
  batchWorkflow: 'a batch: `expctl show ID` and `expctl wait ID` take it; its experiments are ID-v1, ID-v2, ...',
  poolWorkflow: "the fleet's pool: see `expctl pool`",
  tagWorkflow: "a tag's workflow: see `expctl tag show TAG`",
  datasetWorkflow: "a dataset's workflow: see `expctl data versions NAME`",
  datasetVersionWorkflow: 'a dataset version: see `expctl data show NAME@V`',
  promotionWorkflow: 'a promotion: see `expctl promotion ID`',
};

function notAnExperiment(error: NotAnExperimentError): CliError {
  const what = OTHER_KINDS[error.workflowType] ?? `a workflow of type ${error.workflowType}`;
  return new CliError(`${quotedId(error.id)} is not an experiment; it is ${what}`, EXIT_CODES.validation_failed);
}

export async function snapshotOf(client: Client, id: string): Promise<ExperimentSnapshot> {
  checkExperimentId(id);
  const snapshot = await experimentState(client, id).catch((error: unknown) => {
    throw error instanceof NotAnExperimentError ? notAnExperiment(error) : error;
  });
  if (!snapshot) throw new CliError(`no such experiment ${quotedId(id)}`, EXIT_CODES.validation_failed);
  return snapshot;
}

/**
 * Where a queued run waits: its 1-based position in the order the pool serves its queue
 * (placement.ts), or the GPU it is lined up on and the run it follows there; null when neither.
 */
async function queuePositionOf(
  client: Client,
  id: string,
): Promise<{
  queuePosition: { position: number; length: number } | null;
  linedUp: { slotId: string; behind: string | null } | null;
}> {
  const pool = await poolState(client).catch(() => undefined);
  if (!pool) return { queuePosition: null, linedUp: null };
  const ordered = servingOrder(pool.queue, poolLoads(pool, Date.now()));
  const index = ordered.findIndex((request) => request.experimentId === id);
  const slot = pool.slots.find((entry) => entry.next?.lease.experimentId === id);
  return {
    queuePosition: index < 0 ? null : { position: index + 1, length: ordered.length },
    linedUp: slot ? { slotId: slot.slot.slotId, behind: slot.lease?.experimentId ?? null } : null,
  };
}

export async function waitCommand(id: string, options: { json?: boolean }): Promise<void> {
  checkExperimentId(id);
  if (isBatchId(id)) return waitBatchCommand(id, wantsJson(options));
  const client = await connectClient();
  await snapshotOf(client, id);
  await awaitResult(client, experimentHandle(client, id), wantsJson(options));
}

/** Where a run's time went, as `show` prints it: only the parts that are known. */
function formatTimings(t: RunTimings): string {
  const part = (label: string, seconds: number | null, note = '') =>
    seconds === null ? null : `${label} ${seconds.toFixed(1)}s${note}`;
  return (
    [
      part('setup', t.setupSeconds, t.setupCached ? ' (cached)' : ''),
      part('startup', t.startupSeconds),
      part("training (the script's training_seconds)", t.trainingSeconds),
      part('evaluation', t.evaluationSeconds),
      part('script total (its total_seconds)', t.totalSeconds),
      part('process wall time', t.processSeconds),
    ]
      .filter((p) => p !== null)
      .join(', ') || '-'
  );
}

/** Where the run was placed and why, on one line: a multi-GPU run's every GPU and their topology too. */
export function placementLine(p: PlacementRecord): string {
  const where =
    p.slotIds && p.slotIds.length > 1
      ? `${p.slotIds.length} GPUs ${p.slotIds.join(', ')} (${p.acceleratorClass}${p.topology ? `; ${p.topology}` : ''})`
      : `${p.slotId} (${p.acceleratorClass})`;
  return `${where}: ${p.why}; policy ${p.policy}; waited ${(p.queuedMs / 1000).toFixed(1)}s`;
}

/** One attempt of the per-attempt record, on one line. */
export function attemptLine(a: AttemptRecord): string {
  const how = a.ended === null ? 'under way' : a.why ? `${a.ended}: ${a.why}` : a.ended;
  const resumed = a.resumedFrom
    ? `resumed from attempt ${a.resumedFrom.attempt}'s checkpoint of ${a.resumedFrom.writtenAt} (${a.resumedFrom.trainingSeconds}s trained)`
    : 'started fresh';
  const trained = a.trainedSeconds === null ? 'trained ?' : `trained ${a.trainedSeconds}s`;
  const lost = a.lostSeconds === null ? '' : `, lost ${a.lostSeconds}s`;
  const reattached = a.reattached > 0 ? `; re-attached ${a.reattached}x` : '';
  return `#${a.attempt} ${a.slotId}  ${a.startedAt} → ${a.endedAt ?? 'now'}  ${how}${reattached}; ${resumed}; ${trained}${lost}`;
}

export async function showCommand(id: string, options: { json?: boolean; patch?: boolean }): Promise<void> {
  if (options.patch) return showPatch(id, options);
  // A dataset version's workflow id (expctl-dataset-NAME-vV) shows that version.
  const datasetVersion = parseDatasetVersionWorkflowId(id);
  if (datasetVersion) return dataShowCommand(`${datasetVersion.dataset}@${datasetVersion.version}`, options);
  if (isPromotionId(id)) return promotionShowCommand(id, options);
  checkExperimentId(id);
  if (isBatchId(id)) return showBatchCommand(id, wantsJson(options));
  const client = await connectClient();
  const catalog = await openCatalog(client);
  const record = await catalog.experiment(id);
  let snapshot: ExperimentSnapshot | undefined;
  try {
    snapshot = await snapshotOf(client, id);
  } catch (error) {
    // The catalog outlives Temporal's retention: a record alone is still an answer.
    if (!(error instanceof CliError) || !record) throw error;
  }
  // A run still training: its host's environment record travels in the train step's heartbeat
  // until the outcome brings it to the catalog.
  if (record && !record.environment && snapshot?.status === 'running')
    record.environment = await trainingEnvironment(client, id).catch(() => null);
  const { queuePosition, linedUp } =
    snapshot?.status === 'queued' ? await queuePositionOf(client, id) : { queuePosition: null, linedUp: null };
  // Who submitted, canceled (or tried to): the orchestrator's audit trail for this experiment.
  const audit = await catalog.auditTrail(id);
  if (wantsJson(options))
    return printJson({ ...(snapshot ?? { experimentId: id }), queuePosition, linedUp, record: record ?? null, audit });
  if (!snapshot) {
    console.log(safeText(`${id}  [${record!.status}]  (from the catalog; the workflow is past Temporal's retention)`));
    console.log(safeJson(record));
    return;
  }
  // Every line holds text the submitter or the script chose: escaped before it reaches the terminal.
  const lines: string[] = [];
  const say = (text: string) => lines.push(safeText(text));
  const r = snapshot.request;
  say(`${snapshot.experimentId}  [${snapshot.status}]  tag ${snapshot.tag}  category ${r.category}`);
  if (queuePosition !== null)
    say(`  queued: position ${queuePosition.position} of ${queuePosition.length} waiting for a lease`);
  if (linedUp !== null)
    say(
      `  queued: lined up on ${linedUp.slotId} behind ${linedUp.behind ?? 'nobody'}; starts there when that run exits`,
    );
  say(`  hypothesis: ${r.hypothesis}`);
  if (r.description) say(`  description: ${r.description}`);
  say(`  commit:     ${r.commit}  (${r.repo})`);
  say(
    `  command:    ${JSON.stringify(r.command)}   budget ${r.timeBudgetSeconds}s, killed after ${killLimitSeconds(r)}s`,
  );
  if (r.datasets.length > 0) {
    const pinned = snapshot.datasetVersions ?? [];
    say(
      `  datasets:   ${r.datasets
        .map((ref) => {
          const version = pinned.find((p) => p.ref === ref);
          if (!version) return ref;
          const records = version.records === null ? '' : `, ${version.records} records`;
          return `${ref} → ${version.dataset}@${version.version} (${version.shards.length} shards${records}, manifest ${version.manifestSha256.slice(0, 12)})`;
        })
        .join(', ')}`,
    );
  }
  if (r.waitForDataSeconds !== undefined) say(`  waits for data: up to ${r.waitForDataSeconds} s`);
  const secretNames = Object.keys(r.secrets ?? {});
  if (secretNames.length > 0) say(`  secrets:    ${secretNames.join(', ')} (values are not kept)`);
  if (snapshot.validation?.patch)
    say(
      `  patch:      ${snapshot.validation.patch.files.length} file(s), ${snapshot.validation.patch.bytes} bytes, sha256 ${snapshot.validation.patch.sha256.slice(0, 12)}`,
    );
  if (snapshot.placement) say(`  placement:  ${placementLine(snapshot.placement)}`);
  const attempts = snapshot.attemptRecords ?? record?.attemptRecords ?? [];
  if (attempts.length > 0) say(`  attempts:`);
  for (const attempt of attempts) say(`    ${attemptLine(attempt)}`);
  if (record?.environment)
    say(
      `  env:        ${Object.entries(record.environment.software)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}; lockfiles ${Object.keys(record.environment.lockfiles).join(', ') || '-'}`,
    );
  if (snapshot.training?.timings) say(`  time:       ${formatTimings(snapshot.training.timings)}`);
  if (snapshot.training?.containment) {
    const peak = snapshot.training.peakMemoryBytes;
    say(
      `  contained:  ${snapshot.training.containment}${peak !== null ? `, peak memory ${(peak / 1024 ** 2).toFixed(1)} MiB` : ''}${snapshot.training.oomKills ? `, ${snapshot.training.oomKills} OOM kills` : ''}`,
    );
  }
  const telemetry = snapshot.training?.gpuTelemetry ?? record?.gpuTelemetry;
  if (telemetry) {
    say(`  gpu telemetry:${telemetry.available ? ` sampled every ${telemetry.intervalSeconds}s` : ''}`);
    for (const line of telemetryLines(telemetry)) say(`    ${line}`);
  }
  for (const warning of record?.warnings ?? telemetryWarnings(telemetry)) say(`  warning:    ${warning}`);
  if (snapshot.training?.metrics)
    say(
      `  metrics:    ${Object.entries(snapshot.training.metrics)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );
  if (record?.artifacts.length)
    say(
      `  artifacts:  ${record.artifacts.map((a) => `${a.path} (${a.bytes} B, ${a.sha256.slice(0, 12)})`).join(', ')}`,
    );
  if (snapshot.decision)
    say(
      `  decision:   ${snapshot.decision.decision ?? '-'} (${snapshot.decision.action ?? 'no action'}), best ${snapshot.decision.best ?? '-'}, compared with ${snapshot.decision.comparedWith.experimentId ?? 'nothing (first in its group)'}`,
    );
  if (snapshot.reason) say(`  reason:     ${snapshot.reason}`);
  if (record?.originId) say(`  ${record.originKind} of:  ${record.originId}`);
  if (snapshot.submittedBy) say(`  submitted by: ${snapshot.submittedBy}`);
  if (audit.length) {
    say('  audit:');
    for (const entry of audit)
      say(
        `    ${entry.at}  ${entry.action}  ${entry.actor ?? '(no valid credential)'}${entry.role ? ` (${entry.role})` : ''}  ${entry.allowed ? 'allowed' : `refused: ${entry.detail ?? ''}`}`,
      );
  }
  say('  timeline:');
  const timeline = formatTable(
    ['at', 'status', 'note'],
    snapshot.timeline.map((t) => [t.at, t.status, t.note ?? '']),
  );
  lines.push(...timeline.split('\n').map((line) => `    ${line}`));
  console.log(lines.join('\n'));
}

/**
 * `show ID --patch`: the run's whole patch, from the catalog (read through the orchestrator from any
 * host). Through a pipe it is byte-exact; on a terminal control characters are shown escaped;
 * `--json` wraps it in one object.
 */
async function showPatch(id: string, options: { json?: boolean }): Promise<void> {
  const catalog = await openCatalog();
  try {
    const record = await catalog.experiment(id);
    if (!record) throw new CliError(`no experiment ${id} in ${catalog.source}`);
    // Runs recorded before blobs kept the patch (cut at 1 MiB) in their row.
    const text = record.patchSha256
      ? ((await catalog.blob(record.patchSha256)) ?? (await storedPatch(id, record)) ?? record.patch)
      : record.patch;
    if (text === null)
      throw new CliError(
        `experiment ${id} has no patch recorded (${record.status}): one is kept once validation passes`,
      );
    if (options.json === true)
      return printJson({
        experiment_id: id,
        patch_sha256: record.patchSha256,
        patch_bytes: Buffer.byteLength(text, 'utf8'),
        patch: text,
      });
    process.stdout.write(process.stdout.isTTY ? safeText(text, { multiline: true }) : text);
  } finally {
    await catalog.close();
  }
}

/** The patch from the fleet store the record names, when the catalog has no copy (its validating host was gone). */
async function storedPatch(
  id: string,
  record: { patchSha256: string | null; patchUri?: string | null },
): Promise<string | undefined> {
  if (!record.patchSha256 || !record.patchUri) return undefined;
  const store = await openStore({
    ...process.env,
    EXPCTL_STORE: storeOfObjectUri(record.patchUri, record.patchSha256),
  });
  try {
    return (await store.getBytes(record.patchSha256)).toString('utf8');
  } catch (error) {
    if (isStoreError(error)) throw new CliError(`the patch of ${id}: ${error.message}`, EXIT_CODES.infrastructure);
    throw error;
  }
}

export async function cancelCommand(id: string, options: { json?: boolean }): Promise<void> {
  const client = await connectClient();
  const before = await snapshotOf(client, id);
  if (isTerminal(before.status)) throw new CliError(`${id} already ended (${before.status}); nothing to cancel`);
  try {
    await cancelExperiment(client, id);
  } catch (error) {
    throw asRefusal(error);
  }
  if (!wantsJson(options))
    console.error(`expctl: cancel requested for ${id} (was ${before.status}); waiting for its processes to stop ...`);
  await awaitResult(client, experimentHandle(client, id), wantsJson(options));
  // The cancel did what was asked; exit 5 is for `run`/`wait` callers who were canceled.
  if (process.exitCode === EXIT_CODES.canceled) process.exitCode = EXIT_CODES.decided;
}
