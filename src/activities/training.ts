import type { Credential } from '../security/credentials.js';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { TrainingOutcome } from '../domain/experiment.js';
import type { Slot } from '../domain/fleet.js';
import { latestProgress, parseSummaryBlock, type Progress } from '../domain/metrics.js';
import type { ExperimentRequest } from '../domain/request.js';
import { localRepository, removeWorktree } from '../gpu-worker/git.js';
import type { EnvironmentRecord } from '../catalog/record.js';
import { environmentRecord } from './host.js';
import { DeferredCleanup } from '../gpu-worker/deferred-cleanup.js';
import type { LeaseRounds } from '../gpu-worker/lease-rounds.js';
import { boundMetrics, capTailBytes, LogFollower } from '../gpu-worker/log-follower.js';
import { detectContainment, type ContainmentSupport } from '../gpu-worker/containment.js';
import { adoptRun, type StartedRun, type SupervisorExit } from '../gpu-worker/run-process.js';
import { isSupervisor, touchAttached, type ExperimentOpen } from '../gpu-worker/reconcile.js';
import { processAlive } from '../shared/processes.js';
import { readOutcomeFile, writeOutcomeFile } from './run-status.js';
import { activityOver, type AcknowledgedHeartbeat, type HostConfirmations } from '../gpu-worker/host-confirmations.js';
import { uploadArtifacts, writeArtifactManifest } from '../gpu-worker/artifacts.js';
import { runFiles } from '../gpu-worker/run-files.js';
import { fenceToken, prepareRun, type PrepareDeps, type RunRecord } from '../gpu-worker/prepare-run.js';
import { REDACTED, scrubMetrics, scrubText } from '../domain/redact.js';
import { ADOPTED_WITHOUT_SECRETS_NOTE, forgetRunSecrets, workerSecretValues } from '../gpu-worker/run-secrets.js';
import {
  DEFAULT_CHECKPOINT_QUOTA_BYTES,
  DEFAULT_CHECKPOINT_SYNC_MS,
  killLimitSeconds,
  leaseCheckIntervalMs,
  LOG_TAIL_BYTES,
} from '../domain/limits.js';
import { computeTimings } from '../domain/timings.js';
import { ProgressClock } from '../gpu-worker/timings.js';
import { PRIVATE_DIR_MODE, PRIVATE_FILE } from '../security/files.js';
import type { PinnedDataset } from '../domain/dataset-refs.js';
import type { LayoutRoots } from '../gpu-worker/dataset-layout.js';
import type { UnsealingKey } from '../security/sealed-secrets.js';
import { recheckOnLeasedHost, resolvedInputVariables, type HostResolution } from './request-check.js';
import { GPUS_NOT_FREE_ON_HOST, RUN_NOT_ON_HOST } from '../shared/constants.js';
import { MasterPorts } from '../gpu-worker/master-ports.js';
import type { FleetStore } from '../store/store.js';
import { CheckpointSync } from '../gpu-worker/checkpoint-sync.js';
import { attemptWriter } from '../store/fence.js';
import { currentFence, type FenceToken } from '../store/fence.js';
import { createLogShipper, type LogShipper } from '../gpu-worker/log-shipping.js';
import { GpuTelemetrySampler } from '../gpu-worker/gpu-telemetry.js';
import { parseTelemetrySeconds, type GpuFailure, type GpuTelemetry } from '../domain/telemetry.js';

export interface TrainingDeps {
  slot: Slot;
  workDir: string;
  /** The host's credential, for the fleet remote's signed fetches. */
  credential?: Credential;
  heartbeatIntervalMs?: number;
  /** After SIGTERM, how long the group gets before SIGKILL. */
  killAfterMs?: number;
  /** How runs are contained on this host (detected once per worker when not given). */
  containment?: ContainmentSupport;
  /** The raw log's cap and kept tail (see run-process.ts for the defaults). */
  logCapBytes?: number;
  logTailBytes?: number;
  /** How long a supervisor keeps a run going with no worker attached to it (default 60 s). */
  orphanGraceMs?: number;
  /**
   * The fencing time: a run's supervisor stops the run once its lease went unconfirmed this long
   * (default DEFAULT_FENCING_SECONDS; absent here, only the orphan grace applies).
   */
  fencingMs?: number;
  /** Asks the pool whether the lease still stands; a task whose lease is gone never starts. */
  leaseHeld?: (slotId: string, leaseId: string) => Promise<boolean | null>;
  /**
   * Gives the lease back to the pool once every process of its run is gone, so the slot's next run
   * starts while this one is still recorded (absent: the experiment's own release frees it).
   */
  releaseLease?: (experimentId: string, leaseId: string) => Promise<void>;
  /** Where pinned dataset versions are laid out (NAME@V) and the store they come from. */
  datasets?: LayoutRoots;
  /** The root checkpoints outside the commit's tree resolve under; default <workDir>/checkpoints. */
  checkpointsDir?: string;
  /**
   * The runs every slot of this host watches, by experiment (one map per worker process, shared by
   * its slots): a later attempt of an experiment placed on another slot of the same host stops the
   * earlier one before it touches the run's files.
   */
  hostRuns?: Map<string, RunWatch>;
  /** The MASTER_PORT of every live run of this host (one per worker process, shared by its slots). */
  masterPorts?: MasterPorts;
  /** How often a watched run asks the pool whether its lease still stands (default: leaseCheckIntervalMs of the default fencing time). */
  leaseCheckIntervalMs?: number;
  /** The watched runs' checks, asked in the host's rounds (lease-rounds.ts); without them, leaseHeld. */
  leaseRounds?: LeaseRounds;
  /**
   * The host's acknowledged liveness heartbeats (one per worker process): while they confirm the
   * host, a run its train task follows asks the pool nothing (host-confirmations.ts).
   */
  hostConfirmations?: HostConfirmations;
  /** Heartbeats the server acknowledges: a run's last look before its start asks the server, not the pool. */
  acknowledgedHeartbeat?: AcknowledgedHeartbeat;
  /** Where finished runs leave their worktree removal (one per worker process, shared by its slots). */
  cleanup?: DeferredCleanup;
  /** The workers' sealing key pair: opens the run's `--secret` values (without it, a run with secrets is refused). */
  unsealingKey?: UnsealingKey;
  /** The fleet store: checkpoints, artifacts and logs leave the host through it. */
  store?: FleetStore;
  /** How often a run's checkpoint directory is synced to the store (default DEFAULT_CHECKPOINT_SYNC_MS). */
  checkpointSyncMs?: number;
  /** What one run may keep of its checkpoints in the store (default DEFAULT_CHECKPOINT_QUOTA_BYTES). */
  checkpointQuotaBytes?: number;
  /** How long a finished run's artifact uploads retry an unreachable store (default 60 s). */
  artifactUploadMs?: number;
  /** How often a run's log is shipped to the store while it goes (default 5 s). */
  logShipIntervalMs?: number;
  /** The host's GPU sampler (one per worker process, shared by its slots; made here when not given). */
  telemetry?: GpuTelemetrySampler;
  /** Every slot of this host: a re-attached multi-GPU run's record names its GPUs by slot ID only. */
  hostSlots?: Slot[];
  /**
   * Whether the experiment's workflow is still open: asked when the server no longer knows the
   * train task, so a run whose workflow was terminated stops now, not at the next lease checks.
   */
  experimentOpen?: ExperimentOpen;
}

/** What every training heartbeat carries; `expctl run` turns it into a progress bar. */
export interface TrainingHeartbeat {
  /** Environment setup, or the training process (the clocks below start with it). */
  phase?: 'setup' | 'training';
  progress: Progress | null;
  /** Since the training process started, counted against killLimitSeconds. */
  elapsedSeconds: number;
  /** Of the training budget (--time-budget). */
  remainingSeconds: number;
  killLimitSeconds?: number;
  supervisorPid: number | null;
  /**
   * When the worker sent it, by its clock: a heartbeat timeout the server reports long after this
   * was the server's outage, not the worker's silence (hostAnswerSeconds).
   */
  sentAt?: string;
  /** The run's environment record, once taken: a run whose host is lost keeps it from its last heartbeat. */
  environment?: EnvironmentRecord;
}

/** A heartbeat as sent: its details stamped with the time of sending. */
const stamped = (details: TrainingHeartbeat): TrainingHeartbeat => ({ ...details, sentAt: new Date().toISOString() });

export interface RunTrainingInput {
  experimentId: string;
  request: ExperimentRequest;
  slot: Slot;
  /** Every GPU of the lease in topology order (slots[0] is slot); absent: slot alone. */
  slots?: Slot[];
  leaseId: string;
  /** The dataset versions the experiment was pinned to (NAME@latest / NAME@V references). */
  datasets?: PinnedDataset[];
  /** Which attempt of the experiment this is (1 for the first placement); with leaseId, its fencing token. */
  attempt?: number;
  /**
   * Restore the run's latest complete checkpoint before the script starts: the run was re-placed
   * after its host was lost, or retried with --resume.
   */
  resume?: boolean;
  /** Training seconds earlier attempts used: the budget and the kill limit count across attempts. */
  trainedSeconds?: number;
  /**
   * `expctl retry ID --resume`: with `resume`, the experiment whose latest checkpoint is restored
   * (its `runs/<experimentId>/attempts/<n>/checkpoint` documents); absent, the run's own.
   */
  resumeFrom?: { experimentId: string };
}

/** What a train task reports while its run is prepared (commit, data, setup): no process yet. */
function preparationHeartbeat(request: ExperimentRequest): TrainingHeartbeat {
  return {
    phase: 'setup',
    progress: null,
    elapsedSeconds: 0,
    remainingSeconds: request.timeBudgetSeconds,
    killLimitSeconds: killLimitSeconds(request),
    supervisorPid: null,
  };
}

/** The activity on a slot's own queue: runs one training command under supervision. */
/** What a train task answers: the outcome, and where and with what the run trained (captured on its host). */
export type TrainingResult = TrainingOutcome & { environment?: EnvironmentRecord };

export function createTrainingActivities(deps: TrainingDeps) {
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 2000;
  const killAfterMs = deps.killAfterMs ?? 10_000;
  let support: Promise<ContainmentSupport> | undefined;
  const containmentSupport = () =>
    (support ??= deps.containment ? Promise.resolve(deps.containment) : detectContainment(deps.workDir));
  /** The runs this worker process watches, whether or not an activity follows them now. */
  const registry = deps.hostRuns ?? new Map<string, RunWatch>();
  const ports = deps.masterPorts ?? new MasterPorts();
  const cleanup = deps.cleanup ?? new DeferredCleanup();
  const sampler =
    deps.telemetry ??
    new GpuTelemetrySampler({ intervalSeconds: parseTelemetrySeconds(process.env.EXPCTL_TELEMETRY_SECONDS) });
  const register = (experimentId: string, watch: RunWatch) => {
    registry.set(experimentId, watch);
    void watch.outcome
      .catch(() => undefined)
      .finally(() => {
        // Its port is free again once every process of the run is gone (the outcome waits for that).
        if (watch.masterPort !== undefined) ports.release(watch.masterPort);
        if (registry.get(experimentId) !== watch) return;
        registry.delete(experimentId);
        // The log and the outcome are scrubbed: the values are of no more use.
        forgetRunSecrets(experimentId);
      });
    return watch;
  };
  const checkpointDeps = deps.store
    ? {
        store: deps.store,
        intervalMs: deps.checkpointSyncMs ?? DEFAULT_CHECKPOINT_SYNC_MS,
        quotaBytes: deps.checkpointQuotaBytes ?? DEFAULT_CHECKPOINT_QUOTA_BYTES,
      }
    : undefined;
  /** Ships the run's log to the fleet store while it goes (none without a store or a fencing token). */
  const logShipper = (
    token: FenceToken | undefined,
    log: string,
    secretValues: readonly string[],
    startOffset?: number,
  ): LogShipper | undefined =>
    deps.store && token
      ? createLogShipper({
          store: deps.store,
          token,
          host: deps.slot.host,
          logFile: log,
          secretValues,
          startOffset,
          intervalMs: deps.logShipIntervalMs,
        })
      : undefined;
  /** The attempt a re-attached run belongs to: the fence's, when its lease is the run's own. */
  const adoptedToken = async (experimentId: string, leaseId: string | undefined): Promise<FenceToken | undefined> => {
    if (!deps.store || !leaseId) return undefined;
    const fence = await currentFence(deps.store, experimentId).catch(() => null);
    return fence && fence.leaseId === leaseId ? { experimentId, attempt: fence.attempt, leaseId } : undefined;
  };
  /** Gives the run's lease back at its exit; nothing without a pool to tell or a lease to name. */
  const exitRelease = (experimentId: string, leaseId: string | undefined) =>
    deps.releaseLease && leaseId ? () => deps.releaseLease!(experimentId, leaseId) : undefined;
  /** What each watch needs to stop a run whose lease the pool no longer holds. */
  const leaseWatch = (slotId: string, leaseId: string | undefined) => {
    const intervalMs = deps.leaseCheckIntervalMs ?? leaseCheckIntervalMs();
    if (!leaseId) return undefined;
    // A question in the host's round waits up to a round for its answer: asked that much sooner.
    const host = deps.hostConfirmations;
    if (deps.leaseRounds)
      return {
        held: () => deps.leaseRounds!.held(slotId, leaseId),
        intervalMs: Math.max(0, intervalMs - deps.leaseRounds.roundMs),
        host,
      };
    return deps.leaseHeld ? { held: () => deps.leaseHeld!(slotId, leaseId), intervalMs, host } : undefined;
  };

  /** A let-go run whose workflow has ended is stopped: nothing will ever re-attach it or decide it. */
  const stopIfWorkflowEnded = (watch: RunWatch, experimentId: string) => {
    // No answer (undefined) stops nothing: the lease checks decide.
    void deps.experimentOpen?.(experimentId).then((open) => open === false && watch.cancel());
  };

  /**
   * Heartbeats a watched run's progress until it ends. Only a cancel the workflow asked for kills
   * the run; when the server no longer knows the activity (it timed out during an outage, or the
   * worker is shutting down), the activity lets go and the run goes on, to be re-attached, unless
   * its workflow has ended (terminated from outside expctl).
   */
  const follow = async (watch: RunWatch): Promise<TrainingOutcome> => {
    const ctx = Context.current();
    const unfollow = watch.followedIn(deps.hostConfirmations?.current());
    const beat = () => ctx.heartbeat(stamped(watch.latest()));
    beat();
    const ticker = setInterval(beat, heartbeatIntervalMs);
    let onAbort = () => {};
    const letGo = new Promise<never>((_, reject) => {
      onAbort = () => {
        const details = ctx.cancellationDetails;
        if (!details || details.cancelRequested || details.paused || details.reset) {
          watch.cancel();
          return;
        }
        const workflowId = ctx.info.workflowExecution?.workflowId;
        if (details.notFound && workflowId) stopIfWorkflowEnded(watch, workflowId);
        const why = details.notFound
          ? 'the server no longer knows this activity'
          : details.timedOut
            ? 'the activity timed out'
            : 'the worker is shutting down';
        reject(new CancelledFailure(`${why}; the run goes on and its outcome is kept on the host`));
      };
    });
    if (ctx.cancellationSignal.aborted) onAbort();
    else ctx.cancellationSignal.addEventListener('abort', onAbort);
    try {
      return await Promise.race([watch.outcome, letGo]);
    } finally {
      unfollow();
      clearInterval(ticker);
      ctx.cancellationSignal.removeEventListener('abort', onAbort);
    }
  };

  /** A run an earlier worker process started: its supervisor lives on (or has just written its exit). */
  const adopt = async (experimentId: string): Promise<RunWatch | undefined> => {
    const files = runFiles(deps.workDir, experimentId);
    const text = await fs.readFile(files.record, 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    const record = JSON.parse(text) as RunRecord;
    const live = processAlive(record.supervisorPid) && (await isSupervisor(record.supervisorPid));
    const exited = await fs.access(files.exit).then(
      () => true,
      () => false,
    );
    if (!live && !exited) return undefined;
    await fs.appendFile(
      files.log,
      `\nexpctl: a restarted worker re-attached to this run (supervisor ${record.supervisorPid}${live ? '' : ', already exited'})\n`,
    );
    if (hadSecrets(record.request)) await fs.appendFile(files.log, `expctl: ${ADOPTED_WITHOUT_SECRETS_NOTE}\n`);
    const run = await adoptRun({ supervisorPid: record.supervisorPid, planned: record.planned, files });
    const clock = new ProgressClock(files.log);
    await clock.start();
    const secretValues = workerSecretValues();
    if (record.masterPort !== undefined) ports.hold(record.masterPort);
    return register(
      experimentId,
      watchRun(run, record, clock, {
        workDir: deps.workDir,
        killAfterMs,
        heartbeatIntervalMs,
        secretValues,
        lease: leaseWatch(record.slotId ?? deps.slot.slotId, record.leaseId),
        releaseLease: exitRelease(experimentId, record.leaseId),
        cleanup,
        checkpoints: checkpointDeps,
        store: deps.store,
        artifactUploadMs: deps.artifactUploadMs,
        shipLog: logShipper(await adoptedToken(experimentId, record.leaseId), files.log, secretValues),
        telemetry: { sampler, gpus: recordedGpus(record, deps.slot, deps.hostSlots) },
      }),
    );
  };

  const roots = {
    host: deps.slot.host,
    datasetsDir: deps.datasets?.datasetsDir ?? path.join(deps.workDir, 'datasets'),
    checkpointsDir: deps.checkpointsDir ?? path.join(deps.workDir, 'checkpoints'),
    store: deps.store,
  };
  /**
   * Validation ran on one capable host; this is the host that trains. Its own disk and PATH are
   * checked again right before anything runs (captureEnvironment checked them a moment earlier),
   * and a refusal ends the run validation_failed, not a crash.
   */
  const recheck = (repo: string, request: ExperimentRequest, log: string): Promise<HostResolution> =>
    recheckOnLeasedHost(roots, repo, request).catch(async (refusal: Error) => {
      await fs.appendFile(log, `expctl: ${refusal.message}; the training command was not started\n`, PRIVATE_FILE);
      throw refusal;
    });
  /**
   * What preparing one run needs of this worker, for this task's lease; `beat`: what the task's
   * heartbeats carry now (its last look before the start sends one the server must accept).
   */
  const prepareDeps = (input: RunTrainingInput, beat: () => TrainingHeartbeat): PrepareDeps => ({
    slot: deps.slot,
    workDir: deps.workDir,
    credential: deps.credential,
    cleanup,
    killAfterMs,
    heartbeatIntervalMs,
    logCapBytes: deps.logCapBytes,
    logTailBytes: deps.logTailBytes,
    orphanGraceMs: deps.orphanGraceMs,
    fencingMs: deps.fencingMs,
    datasets: deps.datasets,
    unsealingKey: deps.unsealingKey,
    store: deps.store,
    containmentSupport,
    // A worker back from a network cut must not start a task whose lease was released meanwhile.
    requireLease: async () => {
      if (await trainTaskOpen(beat())) return;
      // Only a definite yes starts it: a pool that does not know the slot yet confirms nothing.
      if (
        deps.leaseHeld &&
        !(await askUntilAnswered(async () => (await deps.leaseHeld!(input.slot.slotId, input.leaseId)) === true))
      )
        throw ApplicationFailure.nonRetryable(
          `the lease ${input.leaseId} on ${input.slot.slotId} is gone (released or revoked); the training was not started`,
        );
    },
    checkInputs: async (repo, request, log) => {
      const resolved = await recheck(repo, request, log);
      return {
        datasetDirs: resolved.datasetDirs,
        variables: (tree) => resolvedInputVariables(resolved, tree),
        ...(resolved.checkpoint && 'fromStore' in resolved.checkpoint
          ? { storeCheckpoint: resolved.checkpoint.fromStore }
          : {}),
      };
    },
  });

  /**
   * Whether the server still has this train task open, asked with one heartbeat it must accept: its
   * experiment ends the lease only once the task is over (canceled, timed out, its workflow closed),
   * so an open task's lease stands, and the pool need not be asked (at 1,000 GPUs, a question per
   * start is the pool's limit). A task the server says is over is not started; no answer: the pool.
   */
  const trainTaskOpen = async (details: TrainingHeartbeat): Promise<boolean> => {
    if (!deps.acknowledgedHeartbeat) return false;
    const ctx = Context.current();
    try {
      // The same details the SDK sends (the environment among them): this heartbeat replaces them.
      await deps.acknowledgedHeartbeat(ctx.info.taskToken, stamped(details));
      return true;
    } catch (error) {
      if (!activityOver(error)) return false;
      throw ApplicationFailure.nonRetryable(
        `the train task is over at the server (${(error as Error).message}); the training was not started`,
      );
    }
  };

  /**
   * GPUs are exclusive to their lease. A GPU another live run of this host holds refuses the run,
   * unless the pool no longer holds that run's lease (it was revoked and the run is still stopping):
   * that run is stopped, as an earlier attempt is, and gone before this one starts.
   */
  const freeGpus = async (experimentId: string, gang: Slot[], request: ExperimentRequest): Promise<void> => {
    for (const [other, watch] of [...registry]) {
      // Its processes are gone and its lease given back: only its record is still being written.
      if (other === experimentId || watch.leaseReleased?.()) continue;
      const held = watch.slotIds ?? (watch.slotId ? [watch.slotId] : []);
      const taken = gang.filter((slot) => held.includes(slot.slotId)).map((slot) => slot.slotId);
      if (taken.length === 0) continue;
      const stillLeased =
        !deps.leaseHeld || !watch.slotId || !watch.leaseId
          ? true
          : ((await deps.leaseHeld(watch.slotId, watch.leaseId).catch(() => true)) ?? true);
      if (stillLeased)
        throw ApplicationFailure.create({
          type: GPUS_NOT_FREE_ON_HOST,
          nonRetryable: true,
          message: `${taken.join(', ')} ${taken.length > 1 ? 'are' : 'is'} held by the live run ${other}; ${experimentId} was not started`,
        });
      watch.cancel();
      const ctx = Context.current();
      const beating = setInterval(() => ctx.heartbeat(stamped(preparationHeartbeat(request))), heartbeatIntervalMs);
      await watch.outcome.catch(() => undefined).finally(() => clearInterval(beating));
    }
  };

  /**
   * The run's environment record, taken on this host while the run trains (it never delays the
   * start); none when it cannot be taken (the run is not failed for it).
   */
  const runEnvironment = async (request: ExperimentRequest): Promise<EnvironmentRecord | undefined> => {
    try {
      const repo = await localRepository(request.repo, deps.workDir, request.commit, deps.credential);
      return await environmentRecord(deps.slot.host, deps.hostSlots ?? [deps.slot], repo, request);
    } catch (error) {
      Context.current().log.warn('could not record the run environment', { error: (error as Error).message });
      return undefined;
    }
  };

  return {
    async runTraining(input: RunTrainingInput): Promise<TrainingResult> {
      const { request, experimentId } = input;
      if (input.slot.slotId !== deps.slot.slotId) {
        throw ApplicationFailure.nonRetryable(
          `lease for ${input.slot.slotId} reached the worker of ${deps.slot.slotId}`,
        );
      }
      const gang = leaseSlots(input, deps.slot.host);
      // The same attempt already running here (a retried task): follow it rather than start it twice.
      const watching = registry.get(experimentId);
      if (watching?.leaseId === input.leaseId) return follow(watching);
      if (watching) {
        // An earlier attempt, given up as lost while this host still ran it: its lease is gone, so it
        // stops, and it is gone before this attempt touches the run's files (log, worktree, outcome).
        watching.cancel();
        const ctx = Context.current();
        const beating = setInterval(() => ctx.heartbeat(stamped(preparationHeartbeat(request))), heartbeatIntervalMs);
        await watching.outcome.catch(() => undefined).finally(() => clearInterval(beating));
      }
      await freeGpus(experimentId, gang, request);
      // The run is this worker's from the first moment, not only once its process exists: fetching
      // the commit, laying data out and setup take a while on a loaded host. The watch heartbeats
      // throughout, the host answers `preparing` if asked, and a re-attached task follows it.
      const files = runFiles(deps.workDir, experimentId);
      await fs.mkdir(files.artifacts, { recursive: true, mode: PRIVATE_DIR_MODE });
      await fs.writeFile(files.preparing, String(process.pid), PRIVATE_FILE);
      // This attempt's part of the log starts here: an earlier attempt on this host wrote before it.
      const logStart = await fs.stat(files.log).then(
        (stats) => stats.size,
        () => 0,
      );
      const masterPort = await ports.reserve();
      let watch: RunWatch | undefined;
      let recorded: EnvironmentRecord | undefined;
      /** What the task's heartbeats carry: the preparation's, then the run's, with the environment once taken. */
      const latest = (): TrainingHeartbeat => {
        const beat = watch?.latest() ?? preparationHeartbeat(request);
        return recorded ? { ...beat, environment: recorded } : beat;
      };
      // The train task that follows the run before its watch exists (see RunWatch.followedIn).
      let followed: { epoch: number | undefined; end?: (() => void) | undefined } | undefined;
      // Taken beside the preparation, so the first heartbeat can carry it: a run whose host is lost
      // soon after its start still has it in the heartbeat its workflow reads.
      const environment = runEnvironment(request).then((taken) => (recorded = taken));
      const canceled = new AbortController();
      const prepared = (async () => {
        const started = await prepareRun(
          {
            ...input,
            attempt: Context.current().info.attempt,
            runAttempt: input.attempt ?? 1,
            signal: canceled.signal,
            slots: gang,
            masterPort,
          },
          prepareDeps(input, () => latest()),
        )
          .then(async (run) => {
            if ('outcome' in run) await writeOutcomeFile(deps.workDir, experimentId, run.outcome);
            return run;
          })
          .finally(() => fs.rm(files.preparing, { force: true }));
        if ('outcome' in started) return started.outcome;
        const { run, record, clock, runSecrets } = started;
        const secretValues = [...runSecrets, ...workerSecretValues()];
        const token =
          input.attempt === undefined ? undefined : { experimentId, attempt: input.attempt, leaseId: input.leaseId };
        watch = watchRun(run, record, clock, {
          workDir: deps.workDir,
          killAfterMs,
          heartbeatIntervalMs,
          secretValues,
          lease: leaseWatch(input.slot.slotId, input.leaseId),
          releaseLease: exitRelease(experimentId, input.leaseId),
          cleanup,
          checkpoints: checkpointDeps,
          store: deps.store,
          artifactUploadMs: deps.artifactUploadMs,
          shipLog: logShipper(token, files.log, secretValues, logStart),
          telemetry: { sampler, gpus: input.slots ?? [input.slot] },
        });
        if (canceled.signal.aborted) watch.cancel();
        if (followed) followed.end = watch.followedIn(followed.epoch);
        return watch.outcome;
      })();
      const registered = register(experimentId, {
        leaseId: input.leaseId,
        slotId: input.slot.slotId,
        slotIds: gang.map((slot) => slot.slotId),
        masterPort,
        outcome: prepared,
        latest,
        leaseReleased: () => watch?.leaseReleased?.() ?? false,
        cancel: () => {
          canceled.abort();
          watch?.cancel();
        },
        followedIn: (epoch) => {
          const mine = { epoch, end: watch?.followedIn(epoch) };
          followed = mine;
          return () => {
            mine.end?.();
            if (followed === mine) followed = undefined;
          };
        },
      });
      // The first heartbeat waits a moment for the environment (never long: the run is prepared meanwhile).
      await Promise.race([environment, new Promise((resolve) => setTimeout(resolve, 2000))]);
      const outcome = await follow(registered).catch((error: unknown) => {
        // A canceled run's record still says where and with what it trained.
        if (error instanceof CancelledFailure && recorded)
          throw new CancelledFailure(error.message, [{ environment: recorded }]);
        throw error;
      });
      const taken = await environment;
      return taken ? { ...outcome, environment: taken } : outcome;
    },

    /**
     * Re-attaches to a run after its train activity was lost (worker restart, server outage): the
     * run this worker still supervises, the outcome kept on disk, or a live (or just exited)
     * supervisor left by an earlier worker process, which is adopted and finished like any run.
     */
    async awaitTraining(input: AwaitTrainingInput): Promise<TrainingOutcome> {
      if (input.slot.slotId !== deps.slot.slotId) {
        throw ApplicationFailure.nonRetryable(
          `lease for ${input.slot.slotId} reached the worker of ${deps.slot.slotId}`,
        );
      }
      const { experimentId } = input;
      const watching = registry.get(experimentId);
      if (watching && (watching.leaseId ?? input.leaseId) === input.leaseId) return follow(watching);
      const kept = await readOutcomeFile(deps.workDir, experimentId);
      if (kept) return kept;
      const adopted = await adopt(experimentId);
      if (adopted) return follow(adopted);
      throw ApplicationFailure.create({
        type: RUN_NOT_ON_HOST,
        nonRetryable: true,
        message: `no run of ${experimentId} on ${deps.slot.host}: no outcome, no live supervisor`,
      });
    },
  };
}

/** How often, and how far apart, an unanswered lease question is asked again before the task gives up. */
const LEASE_QUESTION_TRIES = 3;
const LEASE_QUESTION_PAUSE_MS = 1000;

/**
 * A lease question asked again when the pool did not answer it (a busy pool can outlast one
 * question's deadline): only an answer decides, so a burst that slows the pool does not fail runs
 * whose leases stand. The last try's error is thrown.
 */
export async function askUntilAnswered(
  ask: () => Promise<boolean>,
  tries = LEASE_QUESTION_TRIES,
  pauseMs = LEASE_QUESTION_PAUSE_MS,
): Promise<boolean> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await ask();
    } catch (error) {
      if (attempt >= tries) throw error;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }
}

/**
 * The lease's GPUs in its order (slots[0] is the slot the task came to). Every one must be on this
 * host: a set that spans hosts cannot be one run's, and no GPU of it is started on.
 */
function leaseSlots(input: RunTrainingInput, host: string): Slot[] {
  const gang = input.slots ?? [input.slot];
  const refuse = (message: string) =>
    ApplicationFailure.create({ type: GPUS_NOT_FREE_ON_HOST, nonRetryable: true, message });
  if (gang[0]?.slotId !== input.slot.slotId)
    throw refuse(`the lease ${input.leaseId} lists ${gang[0]?.slotId ?? 'no GPU'} first, not ${input.slot.slotId}`);
  const elsewhere = gang.filter((slot) => slot.host !== host);
  if (elsewhere.length > 0)
    throw refuse(
      `the lease ${input.leaseId} includes ${elsewhere.map((slot) => slot.slotId).join(', ')}, not on ${host}; ` +
        `a run's GPUs are all on one host, so ${input.experimentId} was not started`,
    );
  return gang;
}

/**
 * The GPUs a re-attached run's record names (its lease's set, else its slot), as this host's slots;
 * the slot alone when the host no longer offers one of them.
 */
function recordedGpus(record: RunRecord, slot: Slot, hostSlots: Slot[] | undefined): Slot[] {
  const ids = record.slotIds ?? [record.slotId ?? slot.slotId];
  const found = ids.map((id) => (id === slot.slotId ? slot : hostSlots?.find((s) => s.slotId === id)));
  return found.every((s): s is Slot => s !== undefined) ? found : [slot];
}

/** Whether a run's public request had secret values: its --secret ones, its secret-looking --env ones. */
function hadSecrets(request: ExperimentRequest): boolean {
  return Object.keys(request.secrets ?? {}).length > 0 || Object.values(request.env).includes(REDACTED);
}

export interface AwaitTrainingInput {
  experimentId: string;
  slot: Slot;
  leaseId: string;
}

/** A run being watched by this worker process, whatever activity (if any) is following it now. */
export interface RunWatch {
  /** The lease of the attempt being watched (undefined when its record predates leases). */
  leaseId: string | undefined;
  /** The slot of that lease (undefined when its record predates leases). */
  slotId?: string | undefined;
  /** Every GPU the run holds (its lease's set; absent in records of older versions: slotId alone). */
  slotIds?: string[];
  /** The MASTER_PORT it was started with, held until every process of it is gone. */
  masterPort?: number;
  outcome: Promise<TrainingOutcome>;
  latest(): TrainingHeartbeat;
  /**
   * Whether the run gave its lease back at its exit: it holds no GPU and no lease any more (a
   * re-registration names it no longer, and a new run on its GPUs neither waits for it nor stops it).
   */
  leaseReleased?(): boolean;
  /** An operator's cancel or a revoked lease: every process of the run is killed. */
  cancel(): void;
  /**
   * A train task follows the run from now, in the host's liveness epoch `epoch` (undefined: none
   * confirms the host now). Returns what ends that follow: a let-go run asks the pool again.
   */
  followedIn(epoch: number | undefined): () => void;
}

/** What watching a run needs of its worker. */
interface WatchDeps {
  workDir: string;
  killAfterMs: number;
  heartbeatIntervalMs: number;
  secretValues: readonly string[];
  /**
   * Asks the pool about the run's lease; absent, the run is never stopped for it. With `host`, a
   * followed run is confirmed by its host's acknowledged heartbeats instead, while they last.
   */
  lease?: { held: () => Promise<boolean | null>; intervalMs: number; host?: HostConfirmations | undefined };
  /** Gives the run's lease back to the pool (see TrainingDeps.releaseLease). */
  releaseLease?: () => Promise<void>;
  cleanup: DeferredCleanup;
  /** The fleet store the run's checkpoint directory is synced to (absent: no sync). */
  checkpoints?: { store: FleetStore; intervalMs: number; quotaBytes: number };
  store?: FleetStore;
  artifactUploadMs?: number;
  /** Ships the log to the fleet store while the run goes, and once more at its end. */
  shipLog?: LogShipper;
  /** The host's GPU sampler and the run's GPUs (absent: no telemetry). */
  telemetry?: { sampler: GpuTelemetrySampler; gpus: Slot[] };
}

/** Why a watched run was stopped, if it was: its kill limit, a cancel (an operator's, a lost lease), a failed GPU. */
interface RunStop {
  readonly timedOut: boolean;
  readonly canceled: boolean;
  readonly gpuFailure: GpuFailure | null;
  stop(why: 'timeout' | 'cancel'): void;
  /** One of the run's GPUs failed: the whole group is stopped as on a cancel, and the outcome names the GPU. */
  gpuFailed(failure: GpuFailure): void;
}

/** The counts every outcome reports of the heartbeats its run sent. */
type HeartbeatCounts = TrainingOutcome['heartbeats'];

/**
 * Watches one run to its end: progress from its log, the kill limit, the attached file its
 * supervisor checks; then kills what is left, computes the outcome and keeps it on disk (outcome.json)
 * before anyone is told. The same code finishes runs this worker started and runs it adopted.
 */
function watchRun(run: StartedRun, record: RunRecord, clock: ProgressClock, deps: WatchDeps): RunWatch {
  const files = runFiles(deps.workDir, record.experimentId);
  const stopped = runStop(run, deps.killAfterMs);
  const follower = new LogFollower(files.log);
  // The liveness epoch of the train task following the run now (see HostConfirmations).
  let follow: { epoch: number | undefined } | undefined;
  const hostConfirmedAt = () => deps.lease?.host?.confirmedIn(follow?.epoch);
  const beats = runBeats(run, record, follower, stopped, deps, hostConfirmedAt);
  const sync = checkpointSync(record, deps);
  deps.shipLog?.start();
  const telemetry = deps.telemetry?.sampler.subscribe(record.experimentId, deps.telemetry.gpus, (failure) =>
    stopForGpu(files.log, stopped, failure),
  );
  let released: Promise<boolean> | undefined;
  const outcome = (async (): Promise<TrainingOutcome> => {
    let gpuTelemetry: GpuTelemetry | undefined;
    const ended = await untilExit(run, clock, beats.beat, deps.heartbeatIntervalMs).finally(
      () => (gpuTelemetry = telemetry?.finish()),
    );
    released = releaseAtExit(stopped, deps.releaseLease);
    // The last sync at exit, before the outcome is written (a canceled run's too, where it can).
    const checkpoints = await sync?.finish(ended.trainingEndedAt);
    await follower.poll();
    return finishRun(
      {
        run,
        record,
        clock,
        follower,
        stopped,
        heartbeats: beats.heartbeats,
        deps,
        checkpoints,
        gpuTelemetry,
        leaseReleased: released,
      },
      ended,
    );
  })();
  return {
    leaseId: record.leaseId,
    slotId: record.slotId,
    ...(record.slotId ? { slotIds: record.slotIds ?? [record.slotId] } : {}),
    ...(record.masterPort !== undefined ? { masterPort: record.masterPort } : {}),
    outcome,
    latest: beats.latest,
    leaseReleased: () => released !== undefined,
    cancel: () => stopped.stop('cancel'),
    followedIn: (epoch) => {
      const mine = { epoch };
      follow = mine;
      // A later follow (a retried task) outlives this one's end.
      return () => void (follow === mine && (follow = undefined));
    },
  };
}

/**
 * Every process of the run is gone: its lease goes back to the pool now, not once the outcome is
 * recorded, so the slot's next run starts meanwhile. Not for a failed GPU: the experiment drains it
 * before its lease is released. The answer (whether the pool was told) is awaited only as the
 * outcome is returned: the record goes on beside it, and a release that failed is the experiment's
 * to make, as before. Undefined: nothing was released.
 */
function releaseAtExit(stopped: RunStop, release: (() => Promise<void>) | undefined): Promise<boolean> | undefined {
  if (!release || stopped.gpuFailure) return undefined;
  return release().then(
    () => true,
    () => false,
  );
}

/** The run's checkpoint sync, started now (none without a store, or for a record that predates attempts). */
function checkpointSync(record: RunRecord, deps: WatchDeps): CheckpointSync | undefined {
  if (!deps.checkpoints || record.attempt === undefined || !record.leaseId) return undefined;
  const files = runFiles(deps.workDir, record.experimentId);
  const sync = new CheckpointSync({
    dir: files.checkpoints,
    store: deps.checkpoints.store,
    token: fenceToken({ experimentId: record.experimentId, runAttempt: record.attempt, leaseId: record.leaseId }),
    log: files.log,
    intervalMs: deps.checkpoints.intervalMs,
    quotaBytes: deps.checkpoints.quotaBytes,
    // A file restored before the training started holds no training of this attempt.
    trainingSeconds: (atMs) =>
      (Math.max(atMs, record.trainingStartedAt) - record.trainingStartedAt) / 1000 + (record.trainedSeconds ?? 0),
  });
  if (record.fence) sync.claimResult(record.fence);
  return sync.start();
}

/** Stops a run once, for the first reason given. */
function runStop(run: StartedRun, killAfterMs: number): RunStop {
  const state = {
    timedOut: false,
    canceled: false,
    gpuFailure: null as GpuFailure | null,
    stop(why: 'timeout' | 'cancel') {
      if (state.timedOut || state.canceled || state.gpuFailure) return;
      if (why === 'timeout') state.timedOut = true;
      else state.canceled = true;
      void run.stop(killAfterMs);
    },
    gpuFailed(failure: GpuFailure) {
      if (state.timedOut || state.canceled || state.gpuFailure) return;
      state.gpuFailure = failure;
      void run.stop(killAfterMs);
    },
  };
  return state;
}

/** A GPU of the run failed: said in the run's log, then every process of the run is stopped. */
function stopForGpu(log: string, stopped: RunStop, failure: GpuFailure): void {
  void fs
    .appendFile(
      log,
      `\nexpctl: GPU ${failure.index} (${failure.slotId}) failed while the run trained: ${failure.evidence}; every process of the run is stopped\n`,
    )
    .catch(() => undefined)
    .finally(() => stopped.gpuFailed(failure));
}

/**
 * A run's beats: each touches the attached file, reads progress from the log, counts itself, stops
 * the run past its kill limit and asks the pool about its lease now and then.
 */
function runBeats(
  run: StartedRun,
  record: RunRecord,
  follower: LogFollower,
  stopped: RunStop,
  deps: WatchDeps,
  hostConfirmedAt: () => number | undefined,
) {
  const { request, trainingStartedAt } = record;
  const files = runFiles(deps.workDir, record.experimentId);
  const heartbeats: HeartbeatCounts = {
    count: 0,
    firstAt: null,
    lastAt: null,
    intervalSeconds: deps.heartbeatIntervalMs / 1000,
  };
  // The kill limit counts from the training process's start: setup time is not the script's.
  const deadline = trainingStartedAt + killLimitSeconds(request) * 1000;
  let latest: TrainingHeartbeat = {
    phase: 'training',
    progress: null,
    elapsedSeconds: 0,
    remainingSeconds: request.timeBudgetSeconds,
    killLimitSeconds: killLimitSeconds(request),
    supervisorPid: run.supervisorPid,
  };
  const checkLease = leaseCheck(files, stopped, deps.lease, hostConfirmedAt);
  const beat = async () => {
    const now = new Date();
    // With a pool to ask, only a confirmed lease keeps the run going (leaseCheck); without one, the worker's beat.
    if (!deps.lease) await touchAttached(files.attached);
    await follower.poll();
    const elapsed = (Date.now() - trainingStartedAt) / 1000;
    const progress = latestProgress(follower.tailLines());
    latest = {
      phase: 'training',
      // Heartbeats are shown (the progress bar, the Web UI): the raw line is scrubbed like the record.
      progress: progress ? { ...progress, line: scrubText(progress.line, deps.secretValues) } : null,
      elapsedSeconds: Math.round(elapsed * 10) / 10,
      remainingSeconds: Math.max(0, Math.round((request.timeBudgetSeconds - elapsed) * 10) / 10),
      killLimitSeconds: killLimitSeconds(request),
      supervisorPid: run.supervisorPid,
    };
    heartbeats.count++;
    heartbeats.lastAt = now.toISOString();
    heartbeats.firstAt ??= heartbeats.lastAt;
    if (Date.now() > deadline) stopped.stop('timeout');
    // Never awaited here: asking the pool can hang through an outage, and beats must go on meanwhile.
    void checkLease();
  };
  return { beat, heartbeats, latest: () => latest };
}

/**
 * A run whose train task let go (the server timed it out under load, or during a cut) goes on, to
 * be re-attached; but once the pool has given its lease away, the slot is someone else's. Only a
 * definite answer counts, twice in a row, to stop the run here. Each confirmation touches the
 * attached file with the moment it was asked: a pool that cannot be asked (an outage, a cut, a
 * frozen worker) confirms nothing, and the supervisor fences the run after the fencing time.
 */
function leaseCheck(
  files: { log: string; attached: string },
  stopped: RunStop,
  lease: WatchDeps['lease'],
  hostConfirmedAt: () => number | undefined,
): () => Promise<void> {
  const { log } = files;
  let leaseCheckedAt = Date.now();
  let leaseDenials = 0;
  let leaseCheckInFlight = false;
  let hostTouchedAt = 0;
  return async () => {
    if (!lease || leaseCheckInFlight || stopped.canceled || stopped.timedOut) return;
    // Followed, on a host whose heartbeats the server accepts: those confirm the lease (no pool question).
    const hostAt = hostConfirmedAt();
    if (hostAt !== undefined) {
      if (hostAt > hostTouchedAt) await touchAttached(files.attached, new Date(hostAt));
      hostTouchedAt = Math.max(hostTouchedAt, hostAt);
      return;
    }
    if (Date.now() - leaseCheckedAt < lease.intervalMs) return;
    leaseCheckedAt = Date.now();
    leaseCheckInFlight = true;
    const askedAt = new Date();
    const held = await lease
      .held()
      .catch(() => undefined)
      .finally(() => (leaseCheckInFlight = false));
    // No answer, or a pool that does not know the slot yet: nothing confirmed, nothing denied.
    if (held === undefined || held === null) return;
    if (held) await touchAttached(files.attached, askedAt);
    leaseDenials = held ? 0 : leaseDenials + 1;
    if (leaseDenials < 2) return;
    await fs
      .appendFile(log, `\nexpctl: the pool no longer holds this run's lease; every process of the run is stopped\n`)
      .catch(() => undefined);
    stopped.stop('cancel');
  };
}

/** How the run's processes ended, once every one of them is gone. */
interface RunEnd {
  exit: SupervisorExit;
  finished: { peakMemoryBytes: number | null; oomKills: number | null };
  trainingEndedAt: number;
  /** When the last of its processes was gone: the GPU is free from then, and the record's end says so. */
  goneAt: number;
}

/** Beats until the supervisor reports the exit and every process of the run is gone. */
async function untilExit(
  run: StartedRun,
  clock: ProgressClock,
  beat: () => Promise<void>,
  heartbeatIntervalMs: number,
): Promise<RunEnd> {
  await beat();
  // One beat at a time: on a loaded host a beat can outlast the interval.
  let beating = false;
  const ticker = setInterval(() => {
    if (beating) return;
    beating = true;
    void beat()
      .catch(() => undefined)
      .finally(() => (beating = false));
  }, heartbeatIntervalMs);
  try {
    const exit = await run.exited;
    const trainingEndedAt = Date.now();
    await clock.stop();
    // The lease is released once this returns: not before every process of the run is gone.
    const finished = await run.finish();
    return { exit, finished, trainingEndedAt, goneAt: Date.now() };
  } finally {
    clearInterval(ticker);
  }
}

/** A watched run, as finishRun reads it. */
interface Watched {
  run: StartedRun;
  record: RunRecord;
  clock: ProgressClock;
  follower: LogFollower;
  stopped: RunStop;
  heartbeats: HeartbeatCounts;
  deps: WatchDeps;
  /** What the checkpoint sync did (absent: no sync). */
  checkpoints?: Awaited<ReturnType<CheckpointSync['finish']>>;
  /** What the host's sampler saw of the run's GPUs (absent: no sampler). */
  gpuTelemetry?: GpuTelemetry;
  /** Whether the pool was told at the run's exit that its lease is free (absent: it was not asked). */
  leaseReleased?: Promise<boolean>;
}

/** The ended run's outcome, kept on disk before it is returned; a canceled run throws instead. */
async function finishRun(watched: Watched, ended: RunEnd): Promise<TrainingOutcome> {
  const { run, record, clock, follower, stopped, deps } = watched;
  const { request, experimentId, trainingStartedAt } = record;
  const { exit, finished } = ended;
  const files = runFiles(deps.workDir, experimentId);
  const scrub = (text: string) => scrubText(text, deps.secretValues);
  const timedOut = stopped.timedOut || exit.timedOut === true;
  const canceled = stopped.canceled;
  // A supervisor that died without reporting was killed from inside the run (expctl only kills it on cancel or timeout).
  const supervisorKilled = exit.reported === false && !timedOut && !canceled && !stopped.gpuFailure;
  const signal = supervisorKilled ? null : exit.signal;
  if (supervisorKilled) {
    await fs.appendFile(
      files.log,
      `\nexpctl: the run's supervisor was killed (${exit.signal ?? 'unknown signal'}) from inside the run; every process of the run was killed\n`,
    );
    await follower.poll();
  }
  // Off the slot's critical path: the next run need not wait for git to delete this tree.
  deps.cleanup.defer(files.tree, () => removeWorktree(record.repo, files.tree));
  await fs.rm(files.pidFile, { force: true });
  // Once more at exit, before anyone is told: what the run wrote last explains how it ended.
  const shipped = await deps.shipLog?.finish();
  if (canceled) throw new CancelledFailure(`canceled; every process of ${experimentId} was killed`);
  // The record keeps the tail, the block and the artifact list; secrets the run could see are scrubbed from them.
  const logTail = capTailBytes(scrub(follower.tailText(LOG_TAIL_BYTES, 40)));
  const listed = await writeArtifactManifest(
    files.artifacts,
    { experimentId, commit: request.commit, tag: request.tag, configPath: request.configPath ?? null },
    scrub,
  );
  const metrics = boundMetrics(
    scrubMetrics(parseSummaryBlock(follower.tailLines().join('\n')) ?? null, deps.secretValues),
  );
  // After the tail and the metrics are read: a line it adds to the log is no part of the script's block.
  const { artifacts, problems: storeProblems } = await storeArtifacts(record, listed, deps);
  const result: TrainingOutcome = {
    phase: 'training',
    exitCode: exit.exitCode,
    signal,
    timedOut,
    canceled,
    supervisorKilled,
    oomKills: finished.oomKills,
    peakMemoryBytes: finished.peakMemoryBytes,
    containment: run.containment.kind,
    timings: computeTimings(
      {
        setup: record.setup,
        processStartMs: trainingStartedAt,
        processEndMs: ended.trainingEndedAt,
        firstProgressMs: clock.firstProgressMs,
        lastProgressMs: clock.lastProgressMs,
      },
      metrics,
    ),
    metrics,
    logTail,
    artifacts,
    heartbeats: watched.heartbeats,
    logPath: files.log,
    startedAt: record.startedAt,
    // Not when the outcome was written: the slot is handed on at the exit, and the record must not
    // show two runs holding one GPU while this one stores its artifacts.
    endedAt: new Date(ended.goneAt).toISOString(),
    ...(shipped?.log ? { log: shipped.log } : {}),
    ...storeFields(checkpointFields(record, watched.checkpoints), [
      ...storeProblems,
      ...(shipped?.storeProblems ?? []),
    ]),
    ...(watched.gpuTelemetry ? { gpuTelemetry: watched.gpuTelemetry } : {}),
    ...(stopped.gpuFailure ? { gpuFailure: stopped.gpuFailure } : {}),
    ...((await watched.leaseReleased) ? { leaseReleased: true } : {}),
  };
  await writeOutcomeFile(deps.workDir, experimentId, result);
  return result;
}

/** The outcome's checkpoint and store problems; nothing for a run that neither restored nor checkpointed. */
function checkpointFields(
  record: RunRecord,
  synced: Watched['checkpoints'],
): Pick<TrainingOutcome, 'checkpoint' | 'storeProblems'> {
  const problems = [...(synced?.storeProblems ?? [])];
  if (record.fence && 'unreachable' in record.fence && !synced?.checkpoint)
    problems.unshift(`store unreachable at the attempt's start: ${record.fence.unreachable}`);
  const restore = record.checkpointRestore;
  const checkpoint =
    synced?.checkpoint || restore
      ? {
          ...(restore ? { restore } : {}),
          ...(synced?.checkpoint ?? { synced: null, skipped: [] }),
        }
      : undefined;
  return { ...(checkpoint ? { checkpoint } : {}), ...(problems.length > 0 ? { storeProblems: problems } : {}) };
}

/** The checkpoint fields with every store problem of the run (its checkpoints' and its artifacts') in one list. */
function storeFields(
  fields: Pick<TrainingOutcome, 'checkpoint' | 'storeProblems'>,
  artifactProblems: string[],
): Pick<TrainingOutcome, 'checkpoint' | 'storeProblems'> {
  const problems = [...(fields.storeProblems ?? []), ...artifactProblems];
  return {
    ...(fields.checkpoint ? { checkpoint: fields.checkpoint } : {}),
    ...(problems.length > 0 ? { storeProblems: problems } : {}),
  };
}

/**
 * The run's artifacts in the fleet store, each with its URI, through this attempt's fenced writer;
 * what the store lacks is named (and said in the log), and the run completes all the same.
 */
async function storeArtifacts(
  record: RunRecord,
  listed: TrainingOutcome['artifacts'],
  deps: WatchDeps,
): Promise<{ artifacts: TrainingOutcome['artifacts']; problems: string[] }> {
  if (!deps.store || listed.length === 0) return { artifacts: listed, problems: [] };
  const files = runFiles(deps.workDir, record.experimentId);
  if (!record.leaseId)
    return { artifacts: listed, problems: ["artifacts not uploaded: the run's record names no lease"] };
  const token = { experimentId: record.experimentId, attempt: record.attempt ?? 1, leaseId: record.leaseId };
  const stored = await uploadArtifacts({
    dir: files.artifacts,
    artifacts: listed,
    store: deps.store,
    writer: attemptWriter(deps.store, token),
    budgetMs: deps.artifactUploadMs,
  });
  for (const problem of stored.problems)
    await fs.appendFile(files.log, `expctl: ${scrubText(problem, deps.secretValues)}\n`).catch(() => undefined);
  return { artifacts: stored.artifacts, problems: stored.problems.map((p) => scrubText(p, deps.secretValues)) };
}
