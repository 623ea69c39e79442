import fs from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { CheckpointRestore, TrainingOutcome } from '../domain/experiment.js';
import type { Slot } from '../domain/fleet.js';
import type { ExperimentRequest } from '../domain/request.js';
import { killLimitSeconds, remainingLimits } from '../domain/limits.js';
import { computeTimings } from '../domain/timings.js';
import { publicRequest, runSecretValues, scrubText } from '../domain/redact.js';
import { datasetVariables, type PinnedDataset } from '../domain/dataset-refs.js';
import type { Credential } from '../security/credentials.js';
import { PRIVATE_FILE, replacePrivateFile } from '../security/files.js';
import { unsealSecrets, UnsealError, type UnsealingKey } from '../security/sealed-secrets.js';
import { REFUSED_ON_HOST } from '../shared/constants.js';
import { addWorktree, localRepository, removeWorktree } from './git.js';
import type { DeferredCleanup } from './deferred-cleanup.js';
import { LogFollower } from './log-follower.js';
import type { ContainmentSupport, RunContainment } from './containment.js';
import { startRun, type StartedRun } from './run-process.js';
import { runFiles } from './run-files.js';
import { holdRunSecrets, workerSecretValues } from './run-secrets.js';
import { commandInTree } from './confine.js';
import { planSetup, runSetup, trainingEnvironment, type SetupPlan, type SetupResult } from './setup.js';
import { ProgressClock } from './timings.js';
import { layOutDatasets, type LayoutRoots } from './dataset-layout.js';
import { resumedFromValue } from '../domain/checkpoints.js';
import { formatBytes } from '../domain/bounds.js';
import { isStoreError, type FleetStore } from '../store/store.js';
import type { FenceToken } from '../store/fence.js';
import { claimAttempt } from './checkpoint-sync.js';
import { emptyCheckpointDir, restoreLatestCheckpoint } from './checkpoint-restore.js';
import { fetchModelArtifact } from './artifacts.js';

/** What a worker keeps in the run directory so that it, or a worker started after it, can finish the run. */
export interface RunRecord {
  experimentId: string;
  /** Its public form (publicRequest): the secret values are in the run's secrets file only. */
  request: ExperimentRequest;
  /** The local repository the worktree was added from. */
  repo: string;
  startedAt: string;
  trainingStartedAt: number;
  setup: { seconds: number; cached: boolean } | null;
  supervisorPid: number;
  planned: RunContainment;
  /** The lease the run was started on (absent in records of older versions). */
  slotId?: string;
  /** Every GPU of a multi-GPU lease, in its order (absent for one GPU: slotId alone). */
  slotIds?: string[];
  leaseId?: string;
  /** The MASTER_PORT the run was given (absent in records of older versions). */
  masterPort?: number;
  /** The run's attempt (its fencing token with leaseId): the checkpoint sync writes as it. */
  attempt?: number;
  /** Training seconds of earlier attempts. */
  trainedSeconds?: number;
  /** How this attempt's claim of the run's fence went (absent: no fleet store). */
  fence?: FenceClaim;
  /** What the run's checkpoint directory started from (absent: neither resumed nor given a store checkpoint). */
  checkpointRestore?: CheckpointRestore;
}

/** How claiming the run's fence went at the attempt's start. */
export type FenceClaim = { claimed: true } | { fenced: string } | { unreachable: string };

/** What the host's checks resolved for this run's inputs, re-checked on the leased host. */
export interface CheckedInputs {
  /** Each path dataset reference and the directory it resolved to on this host. */
  datasetDirs: Record<string, string>;
  /** The variables naming resolved inputs (the checkpoint), given the run's tree. */
  variables(tree: string): Record<string, string>;
  /** `--checkpoint store:ID`: the experiment whose latest synced checkpoint the run starts from. */
  storeCheckpoint?: string;
}

/** The host and worker this run is prepared on (one per slot's activities). */
export interface PrepareDeps {
  slot: Slot;
  workDir: string;
  credential?: Credential;
  cleanup: DeferredCleanup;
  killAfterMs: number;
  heartbeatIntervalMs: number;
  logCapBytes?: number;
  logTailBytes?: number;
  orphanGraceMs?: number;
  /** The host's fencing time: its supervisor stops a run whose lease went unconfirmed this long. */
  fencingMs?: number;
  datasets?: LayoutRoots;
  containmentSupport(): Promise<ContainmentSupport>;
  /** Throws when the pool no longer holds the lease: a released lease's run never starts. */
  requireLease(): Promise<void>;
  /** The workers' sealing key pair: opens the run's `--secret` values (without it, a run with secrets is refused). */
  unsealingKey?: UnsealingKey;
  /** The request's checks again on this host; a refusal is written to the log and thrown. */
  checkInputs(repo: string, request: ExperimentRequest, log: string): Promise<CheckedInputs>;
  /** The fleet store: checkpoints are restored from it (and synced to it, see checkpoint-sync.ts); a holdout evaluation's model is fetched from it. */
  store?: FleetStore;
}

export interface PrepareInput {
  experimentId: string;
  request: ExperimentRequest;
  leaseId: string;
  datasets?: PinnedDataset[];
  /** The task's attempt, named in the log. */
  attempt: number;
  /** Aborted by a cancel (an operator's, or the attempt given up as lost): nothing starts after it. */
  signal: AbortSignal;
  /** The run's attempt (1 for its first placement), its fencing token with leaseId. */
  runAttempt: number;
  /** Restore the latest checkpoint of an earlier attempt before the script starts. */
  resume?: boolean;
  /** With resume, the run retried (`expctl retry ID --resume`): its checkpoint when this run has none of its own. */
  resumeFrom?: { experimentId: string };
  /** Training seconds of earlier attempts. */
  trainedSeconds?: number;
  /** Every GPU of the lease in its order (slots[0] is the slot's own); absent: the slot alone. */
  slots?: Slot[];
  /** The free port this run's processes rendezvous on (MASTER_PORT), held for it by the host. */
  masterPort: number;
}

/** The fencing token of one attempt of a run. */
export const fenceToken = (input: { experimentId: string; runAttempt: number; leaseId: string }): FenceToken => ({
  experimentId: input.experimentId,
  attempt: input.runAttempt,
  leaseId: input.leaseId,
});

/** A prepared run: its training process started, or its environment setup failed (no process). */
export type PreparedRun =
  | { run: StartedRun; record: RunRecord; clock: ProgressClock; runSecrets: string[] }
  | { outcome: TrainingOutcome };

/** The supervisor enforces the kill limit this long after the worker would (it only acts when no worker does). */
const SUPERVISOR_DEADLINE_SLACK_MS = 5000;

/**
 * Prepares one run and starts its training process: the commit's worktree, the re-check on this
 * host, pinned data, secrets, environment setup, a last look at the lease. The worktree belongs to
 * this function until the training process exists; on every other way out it is removed here.
 */
export async function prepareRun(input: PrepareInput, deps: PrepareDeps): Promise<PreparedRun> {
  const { request, experimentId } = input;
  const files = runFiles(deps.workDir, experimentId);
  // The worker's own cache of the repository (not the run's files): fetched while the pool is asked.
  const repository = localRepository(request.repo, deps.workDir, request.commit, deps.credential);
  repository.catch(() => undefined); // its failure is thrown below, once the lease is known
  // Asked while the task already heartbeats and the host answers `preparing`: on a loaded
  // fleet the pool can take longer to answer than the heartbeat timeout.
  await deps.requireLease();
  // An earlier attempt's result on this host is not this attempt's.
  for (const file of [files.outcome, files.exit, files.started, files.record]) await fs.rm(file, { force: true });
  // An earlier attempt's checkpoints here are not this attempt's: a restore (or the script) fills it.
  await emptyCheckpointDir(files.checkpoints);
  // Before any restore or store write, this attempt becomes the run's current one (fence.ts).
  const fence = deps.store ? await claimAttempt(deps.store, fenceToken(input)) : undefined;
  const repo = await repository;
  const checked = await deps.checkInputs(repo, request, files.log);
  await deps.cleanup.settled(files.tree);
  await addWorktree(repo, request.commit, files.tree);
  let started = false;
  try {
    const prepared = await prepareInTree(input, deps, repo, checked, fence);
    started = 'run' in prepared;
    return prepared;
  } finally {
    if (!started) await removeWorktree(repo, files.tree);
  }
}

/** Inside the worktree: data, variables, setup, then the training process under its supervisor. */
async function prepareInTree(
  input: PrepareInput,
  deps: PrepareDeps,
  repo: string,
  checked: CheckedInputs,
  fence: FenceClaim | undefined,
): Promise<PreparedRun> {
  const { request, experimentId } = input;
  const files = runFiles(deps.workDir, experimentId);
  const datasetDirs = { ...checked.datasetDirs, ...(await layOutPinned(input.datasets ?? [], deps)) };
  // Opened here only, in memory: history holds them sealed for the workers.
  const secrets = openSecrets(deps.unsealingKey, experimentId, request.secrets ?? {});
  // Held in memory before anything runs, so every later read of this run's output is scrubbed of them.
  const runSecrets = runSecretValues({ ...request, secrets });
  holdRunSecrets(experimentId, runSecrets);
  const own = { ...runVariables(input, deps, checked, datasetDirs), ...(await modelVariables(input, deps)) };
  const startedAt = new Date();
  await fs.appendFile(
    files.log,
    `expctl: experiment ${experimentId} attempt ${input.runAttempt}${input.attempt > 1 ? ` (task try ${input.attempt})` : ''} on ${gpusText(gangOf(input, deps))}; ` +
      `commit ${request.commit.slice(0, 12)}; command ${JSON.stringify(request.command)}; started ${startedAt.toISOString()}\n`,
    PRIVATE_FILE,
  );
  await sayFenceClaim(files.log, fence);
  const secretValues = [...runSecrets, ...workerSecretValues()];
  const plan = await planSetup({
    tree: files.tree,
    envsRoot: path.join(deps.workDir, 'envs'),
    command: request.command,
    setup: request.setup,
  });
  const setup = await setUpEnvironment(input, deps, plan, { ...request.env, ...own }, secretValues);
  if ('failed' in setup)
    return { outcome: await setupFailureOutcome(setup.failed, deps, files, secretValues, startedAt) };
  const restored = await restoreCheckpoint(input, deps, checked);
  const charged = chargedRequest(input, restored.restore);

  await fs.appendFile(files.log, `expctl: training starts ${new Date().toISOString()}\n`, PRIVATE_FILE);
  const clock = new ProgressClock(files.log);
  await clock.start();
  const trainingStartedAt = Date.now();
  // The lease may have gone while the run was prepared (this attempt given up as lost, the
  // run re-placed): the last moment to find out before a second copy of it starts.
  if (input.signal.aborted) throw new CancelledFailure(`canceled before the training of ${experimentId} started`);
  const run = await startRun({
    // Asked while the supervisor starts: it starts the training process only after the answer.
    beforeTraining: deps.requireLease,
    experimentId,
    support: await deps.containmentSupport(),
    log: files.log,
    cwd: files.tree,
    command: commandInTree(request.command, files.tree),
    // The training process's variables on top of the worker's: the request's, its secrets, expctl's.
    env: {
      ...request.env,
      ...secrets,
      ...own,
      EXPCTL_TIME_BUDGET: String(charged.timeBudgetSeconds),
      ...restored.variables,
      ...trainingEnvironment(plan),
    },
    // What the supervisor scrubs from the raw log as it writes it (they are in the training process's environment).
    secretValues,
    logCapBytes: deps.logCapBytes,
    logTailBytes: deps.logTailBytes,
    files,
    orphanGraceMs: deps.orphanGraceMs,
    fencingMs: deps.fencingMs,
    // The worker stops the run at the deadline; the supervisor a little later, should no worker watch it.
    deadlineMs: trainingStartedAt + killLimitSeconds(charged) * 1000 + SUPERVISOR_DEADLINE_SLACK_MS,
    killAfterMs: deps.killAfterMs,
  });
  await fs.writeFile(files.pidFile, String(run.supervisorPid), PRIVATE_FILE);
  const record: RunRecord = {
    experimentId,
    // The budget and kill limit it was given: what earlier attempts left when it resumed.
    request: publicRequest(charged),
    repo,
    startedAt: startedAt.toISOString(),
    trainingStartedAt,
    setup: setup.done,
    supervisorPid: run.supervisorPid,
    planned: run.containment,
    slotId: deps.slot.slotId,
    ...(gangOf(input, deps).length > 1 ? { slotIds: gangOf(input, deps).map((slot) => slot.slotId) } : {}),
    leaseId: input.leaseId,
    masterPort: input.masterPort,
    attempt: input.runAttempt,
    ...(input.trainedSeconds ? { trainedSeconds: input.trainedSeconds } : {}),
    ...(fence ? { fence } : {}),
    ...(restored.restore ? { checkpointRestore: restored.restore } : {}),
  };
  await replacePrivateFile(files.record, JSON.stringify(record));
  return { run, record, clock, runSecrets };
}

/**
 * The request with the budget and kill limit earlier attempts left (remainingLimits): both count
 * training time across attempts. Only a run resumed from its own earlier attempt's checkpoint is
 * charged (with the most it is known to have trained: its lost attempts' last heartbeats, or the
 * checkpoint's own count); one that starts from step 0 keeps its whole budget, as runs that never
 * checkpoint always did.
 */
function chargedRequest(input: PrepareInput, restore: CheckpointRestore | undefined): ExperimentRequest {
  if (!restore?.restored || restore.experimentId !== input.experimentId) return input.request;
  const trained = Math.max(input.trainedSeconds ?? 0, restore.trainingSeconds);
  return { ...input.request, ...remainingLimits(input.request, trained) };
}

/** The run's own variables; setup gets them too, but not the secrets (they are the training process's only). */
function runVariables(
  input: PrepareInput,
  deps: PrepareDeps,
  checked: CheckedInputs,
  datasetDirs: Record<string, string>,
): Record<string, string> {
  const { request, experimentId } = input;
  const files = runFiles(deps.workDir, experimentId);
  return {
    ...processContract(gangOf(input, deps), input.masterPort),
    EXPCTL_EXPERIMENT_ID: experimentId,
    EXPCTL_TIME_BUDGET: String(request.timeBudgetSeconds),
    EXPCTL_ARTIFACT_DIR: files.artifacts,
    EXPCTL_CHECKPOINT_DIR: files.checkpoints,
    PYTHONUNBUFFERED: '1',
    ...(request.configPath ? { EXPCTL_CONFIG: path.join(files.tree, request.configPath) } : {}),
    ...checked.variables(files.tree),
    ...datasetVariables(datasetDirs),
  };
}

/** The run's GPUs in its lease's order: the set it was granted, or its slot alone. */
function gangOf(input: PrepareInput, deps: PrepareDeps): Slot[] {
  return input.slots && input.slots.length > 0 ? input.slots : [deps.slot];
}

/**
 * The variables every run gets (one GPU too) so that one process, or `torchrun` starting one per
 * GPU, sees exactly the lease's GPUs: CUDA_VISIBLE_DEVICES lists them in the lease's (topology)
 * order; EXPCTL_GPUS counts them (0 on CPU slots); EXPCTL_NPROC_PER_NODE is the processes to start;
 * MASTER_ADDR/MASTER_PORT are a rendezvous no other live run of the host shares.
 */
export function processContract(slots: Slot[], masterPort: number): Record<string, string> {
  const cpu = slots.every((slot) => slot.acceleratorClass === 'cpu');
  return {
    CUDA_VISIBLE_DEVICES: cpu ? '' : slots.map((slot) => slot.index).join(','),
    EXPCTL_GPUS: String(cpu ? 0 : slots.length),
    EXPCTL_NPROC_PER_NODE: String(slots.length),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(masterPort),
  };
}

/** The run's GPUs as the log names them: the slot and its model, or the whole set. */
function gpusText(slots: Slot[]): string {
  const [lead] = slots;
  if (slots.length === 1) return `${lead!.slotId} (${lead!.name})`;
  return `${slots.length} GPUs ${slots.map((slot) => slot.slotId).join(', ')} (${lead!.name})`;
}

/** A claim that did not succeed is said in the log: the run trains all the same. */
async function sayFenceClaim(log: string, fence: FenceClaim | undefined): Promise<void> {
  if (!fence || 'claimed' in fence) return;
  const line =
    'fenced' in fence
      ? `expctl: ${fence.fenced}; this attempt's checkpoints are not synced\n`
      : `expctl: the fleet store did not answer (${fence.unreachable}); the run trains, and its checkpoint uploads are retried\n`;
  await fs.appendFile(log, line, PRIVATE_FILE);
}

/**
 * Fills EXPCTL_CHECKPOINT_DIR before the script starts: a resumed run's latest earlier checkpoint
 * (a failed restore starts the run fresh and says so), else `--checkpoint store:ID`'s (a failure
 * refuses the run: it asked for that start). Returns the variables that tell the script.
 */
async function restoreCheckpoint(
  input: PrepareInput,
  deps: PrepareDeps,
  checked: CheckedInputs,
): Promise<{ restore?: CheckpointRestore; variables: Record<string, string> }> {
  const files = runFiles(deps.workDir, input.experimentId);
  const say = (line: string) => fs.appendFile(files.log, `expctl: ${line}\n`, PRIVATE_FILE);
  let restore: CheckpointRestore | undefined;
  if (input.resume) {
    // This run's own earlier attempts first; a retried run's predecessor when it has none.
    const sources = [
      ...(input.runAttempt > 1 ? [{ experimentId: input.experimentId, below: input.runAttempt }] : []),
      ...(input.resumeFrom ? [{ experimentId: input.resumeFrom.experimentId, below: Infinity }] : []),
    ];
    for (const source of sources) {
      restore = deps.store
        ? await restoreLatestCheckpoint({ store: deps.store, ...source, dir: files.checkpoints, say })
        : { restored: false, reason: `the worker of ${deps.slot.slotId} has no fleet store` };
      if (!restore.restored) continue;
      await say(`resumed from ${restoredText(restore)}`);
      const from = restore.experimentId === input.experimentId ? undefined : restore.experimentId;
      return {
        restore,
        variables: {
          EXPCTL_RESUME: '1',
          EXPCTL_RESUMED_FROM: resumedFromValue(restore.attempt, restore.syncedAt, from),
        },
      };
    }
    const reason = restore && !restore.restored ? restore.reason : 'no earlier attempt to resume from';
    restore = { restored: false, reason };
    await say(`nothing was restored (${reason}); the run starts fresh`);
  }
  if (checked.storeCheckpoint === undefined) return { ...(restore ? { restore } : {}), variables: {} };
  const source = checked.storeCheckpoint;
  const initial = deps.store
    ? await restoreLatestCheckpoint({
        store: deps.store,
        experimentId: source,
        below: Infinity,
        dir: files.checkpoints,
        say,
      })
    : ({ restored: false, reason: `the worker of ${deps.slot.slotId} has no fleet store` } as const);
  if (!initial.restored)
    throw ApplicationFailure.create({
      type: REFUSED_ON_HOST,
      nonRetryable: true,
      message: `checkpoint store:${source} could not be restored on ${deps.slot.host}: ${initial.reason}`,
    });
  await say(`the run starts from ${restoredText(initial)} (--checkpoint store:${source})`);
  return {
    restore: initial,
    variables: {
      EXPCTL_CHECKPOINT: files.checkpoints,
      EXPCTL_RESUMED_FROM: resumedFromValue(initial.attempt, initial.syncedAt, source),
    },
  };
}

function restoredText(restore: Extract<CheckpointRestore, { restored: true }>): string {
  return (
    `the checkpoint of attempt ${restore.attempt} of ${restore.experimentId}, synced ${restore.syncedAt} ` +
    `(${restore.files} files, ${formatBytes(restore.bytes)}, restored in ${restore.seconds} s)`
  );
}

/**
 * A holdout evaluation's model, fetched from the fleet store into the run's directory. A model the
 * store does not have as recorded refuses the run (validation_failed: no retry brings it back).
 */
async function modelVariables(input: PrepareInput, deps: PrepareDeps): Promise<Record<string, string>> {
  const files = runFiles(deps.workDir, input.experimentId);
  try {
    return await fetchModelArtifact(input.request.env, files.dir, deps.store);
  } catch (error) {
    if (!isStoreError(error, 'missing') && !isStoreError(error, 'corrupt')) throw error;
    const message = `the model to evaluate cannot be fetched: ${error.message}`;
    await fs.appendFile(files.log, `expctl: ${message}; the training command was not started\n`, PRIVATE_FILE);
    throw ApplicationFailure.create({ type: REFUSED_ON_HOST, nonRetryable: true, message });
  }
}

/** Lays pinned versions out on this host (the preparation heartbeat covers the time it takes). */
async function layOutPinned(pinned: PinnedDataset[], deps: PrepareDeps): Promise<Record<string, string>> {
  if (pinned.length === 0) return {};
  if (!deps.datasets)
    throw ApplicationFailure.nonRetryable(`the worker of ${deps.slot.slotId} has no dataset store configured`);
  return layOutDatasets(pinned, deps.datasets);
}

type SetupFailure = Extract<SetupResult, { ok: false }>;

/** Setup: its own phase and limit; the training command never starts when it fails. */
async function setUpEnvironment(
  input: PrepareInput,
  deps: PrepareDeps,
  plan: SetupPlan | null,
  env: Record<string, string>,
  secretValues: readonly string[],
): Promise<{ done: { seconds: number; cached: boolean } | null } | { failed: SetupFailure }> {
  if (!plan) return { done: null };
  const files = runFiles(deps.workDir, input.experimentId);
  const result = await runSetup({
    plan,
    cwd: files.tree,
    logFile: files.log,
    env,
    secretValues: [...secretValues],
    timeoutSeconds: input.request.setupTimeoutSeconds,
    killAfterMs: deps.killAfterMs,
    signal: input.signal,
  });
  if (result.ok) return { done: { seconds: result.seconds, cached: result.cached } };
  if (result.canceled) throw new CancelledFailure(`canceled during environment setup of ${input.experimentId}`);
  await fs.appendFile(files.log, `expctl: ${result.reason}; the training command was not started\n`, PRIVATE_FILE);
  return { failed: result };
}

/** The record of a run whose environment setup failed or ran out of time: the training command never ran. */
async function setupFailureOutcome(
  result: SetupFailure,
  deps: PrepareDeps,
  files: ReturnType<typeof runFiles>,
  secretValues: readonly string[],
  startedAt: Date,
): Promise<TrainingOutcome> {
  const follower = new LogFollower(files.log);
  await follower.poll();
  return {
    phase: 'setup',
    exitCode: result.exitCode,
    signal: result.signal,
    timedOut: result.timedOut,
    canceled: false,
    supervisorKilled: false,
    oomKills: null,
    peakMemoryBytes: null,
    timings: computeTimings(
      {
        setup: { seconds: result.seconds, cached: false },
        processStartMs: null,
        processEndMs: null,
        firstProgressMs: null,
        lastProgressMs: null,
      },
      null,
    ),
    metrics: null,
    logTail: scrubText(follower.tailLines().slice(-40).join('\n'), secretValues),
    artifacts: [],
    heartbeats: { count: 0, firstAt: null, lastAt: null, intervalSeconds: deps.heartbeatIntervalMs / 1000 },
    logPath: files.log,
    startedAt: startedAt.toISOString(),
    endedAt: new Date().toISOString(),
  };
}

/** A run's `--secret` values opened with the workers' key; one that does not open refuses the run (no retry helps). */
function openSecrets(
  key: UnsealingKey | undefined,
  experimentId: string,
  sealed: Readonly<Record<string, string>>,
): Record<string, string> {
  if (Object.keys(sealed).length === 0) return {};
  const refuse = (message: string) => ApplicationFailure.create({ type: REFUSED_ON_HOST, nonRetryable: true, message });
  if (!key) throw refuse('the run has secrets (--secret) and this worker has no sealing key to open them');
  try {
    return unsealSecrets(key, experimentId, sealed);
  } catch (error) {
    // Refused like a request that fails its checks on the leased host: validation_failed, never retried.
    if (error instanceof UnsealError) throw refuse(error.message);
    throw error;
  }
}
