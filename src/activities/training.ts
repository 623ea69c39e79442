import type { Credential } from '../security/credentials.js';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { TrainingOutcome } from '../domain/experiment.js';
import type { Slot } from '../domain/fleet.js';
import { latestProgress, parseSummaryBlock, type Progress } from '../domain/metrics.js';
import type { ExperimentRequest } from '../domain/request.js';
import { addWorktree, localRepository, removeWorktree } from '../gpu-worker/git.js';
import { DeferredCleanup } from '../gpu-worker/deferred-cleanup.js';
import { boundMetrics, capTailBytes, LogFollower } from '../gpu-worker/log-follower.js';
import { detectContainment, type ContainmentSupport, type RunContainment } from '../gpu-worker/containment.js';
import { adoptRun, startRun, type StartedRun, type SupervisorExit } from '../gpu-worker/run-process.js';
import { isSupervisor, touchAttached } from '../gpu-worker/reconcile.js';
import { processAlive } from '../shared/processes.js';
import { readOutcomeFile, writeOutcomeFile } from './run-status.js';
import { writeArtifactManifest } from '../gpu-worker/artifacts.js';
import { runFiles } from '../gpu-worker/run-files.js';
import { publicRequest, REDACTED, runSecretValues, scrubMetrics, scrubText } from '../domain/redact.js';
import {
  ADOPTED_WITHOUT_SECRETS_NOTE,
  forgetRunSecrets,
  holdRunSecrets,
  workerSecretValues,
} from '../gpu-worker/run-secrets.js';
import { killLimitSeconds, LOG_TAIL_BYTES } from '../domain/limits.js';
import { computeTimings } from '../domain/timings.js';
import { commandInTree } from '../gpu-worker/confine.js';
import { planSetup, runSetup, trainingEnvironment } from '../gpu-worker/setup.js';
import { ProgressClock } from '../gpu-worker/timings.js';
import { PRIVATE_DIR_MODE, PRIVATE_FILE } from '../security/files.js';
import { unsealSecrets, UnsealError, type UnsealingKey } from '../security/sealed-secrets.js';
import { datasetVariables, type PinnedDataset } from '../domain/dataset-refs.js';
import { layOutDatasets, type LayoutRoots } from '../gpu-worker/dataset-layout.js';
import { recheckOnLeasedHost, resolvedInputVariables, type HostResolution } from './request-check.js';
import { REFUSED_ON_HOST, RUN_NOT_ON_HOST } from '../shared/constants.js';

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
  /** Asks the pool whether the lease still stands; a task whose lease is gone never starts. */
  leaseHeld?: (slotId: string, leaseId: string) => Promise<boolean>;
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
  /** How often a watched run asks the pool whether its lease still stands (default 5 s). */
  leaseCheckIntervalMs?: number;
  /** Where finished runs leave their worktree removal (one per worker process, shared by its slots). */
  cleanup?: DeferredCleanup;
  /** The workers' sealing key pair: opens the run's `--secret` values (without it, a run with secrets is refused). */
  unsealingKey?: UnsealingKey;
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
}

/** A heartbeat as sent: its details stamped with the time of sending. */
const stamped = (details: TrainingHeartbeat): TrainingHeartbeat => ({ ...details, sentAt: new Date().toISOString() });

export interface RunTrainingInput {
  experimentId: string;
  request: ExperimentRequest;
  slot: Slot;
  leaseId: string;
  /** The dataset versions the experiment was pinned to (NAME@latest / NAME@V references). */
  datasets?: PinnedDataset[];
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
export function createTrainingActivities(deps: TrainingDeps) {
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 2000;
  const killAfterMs = deps.killAfterMs ?? 10_000;
  let support: Promise<ContainmentSupport> | undefined;
  const containmentSupport = () =>
    (support ??= deps.containment ? Promise.resolve(deps.containment) : detectContainment(deps.workDir));
  /** The runs this worker process watches, whether or not an activity follows them now. */
  const registry = deps.hostRuns ?? new Map<string, RunWatch>();
  const cleanup = deps.cleanup ?? new DeferredCleanup();
  const register = (experimentId: string, watch: RunWatch) => {
    registry.set(experimentId, watch);
    void watch.outcome
      .catch(() => undefined)
      .finally(() => {
        if (registry.get(experimentId) !== watch) return;
        registry.delete(experimentId);
        // The log and the outcome are scrubbed: the values are of no more use.
        forgetRunSecrets(experimentId);
      });
    return watch;
  };
  /** What each watch needs to stop a run whose lease the pool no longer holds. */
  const leaseWatch = (slotId: string, leaseId: string | undefined) =>
    deps.leaseHeld && leaseId
      ? { held: () => deps.leaseHeld!(slotId, leaseId), intervalMs: deps.leaseCheckIntervalMs ?? 5000 }
      : undefined;

  /**
   * Heartbeats a watched run's progress until it ends. Only a cancel the workflow asked for kills
   * the run; when the server no longer knows the activity (it timed out during an outage, or the
   * worker is shutting down), the activity lets go and the run goes on, to be re-attached.
   */
  const follow = async (watch: RunWatch): Promise<TrainingOutcome> => {
    const ctx = Context.current();
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
    return register(
      experimentId,
      watchRun(run, record, clock, {
        workDir: deps.workDir,
        killAfterMs,
        heartbeatIntervalMs,
        secretValues,
        lease: leaseWatch(record.slotId ?? deps.slot.slotId, record.leaseId),
        cleanup,
      }),
    );
  };

  /** Lays pinned versions out on this host (the preparation heartbeat covers the time it takes). */
  const layOutPinned = async (pinned: PinnedDataset[]): Promise<Record<string, string>> => {
    if (pinned.length === 0) return {};
    if (!deps.datasets)
      throw ApplicationFailure.nonRetryable(`the worker of ${deps.slot.slotId} has no dataset store configured`);
    return layOutDatasets(pinned, deps.datasets);
  };

  const roots = {
    host: deps.slot.host,
    datasetsDir: deps.datasets?.datasetsDir ?? path.join(deps.workDir, 'datasets'),
    checkpointsDir: deps.checkpointsDir ?? path.join(deps.workDir, 'checkpoints'),
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

  return {
    async runTraining(input: RunTrainingInput): Promise<TrainingOutcome> {
      const ctx = Context.current();
      const { request, experimentId } = input;
      if (input.slot.slotId !== deps.slot.slotId) {
        throw ApplicationFailure.nonRetryable(
          `lease for ${input.slot.slotId} reached the worker of ${deps.slot.slotId}`,
        );
      }
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
      // A worker back from a network cut must not start a task whose lease was released meanwhile.
      const requireLease = async () => {
        if (deps.leaseHeld && !(await deps.leaseHeld(input.slot.slotId, input.leaseId)))
          throw ApplicationFailure.nonRetryable(
            `the lease ${input.leaseId} on ${input.slot.slotId} is gone (released or revoked); the training was not started`,
          );
      };
      // The run is this worker's from the first moment, not only once its process exists: fetching
      // the commit, laying data out and setup take a while on a loaded host. The watch heartbeats
      // throughout, the host answers `preparing` if asked, and a re-attached task follows it.
      const files = runFiles(deps.workDir, experimentId);
      await fs.mkdir(files.artifacts, { recursive: true, mode: PRIVATE_DIR_MODE });
      await fs.writeFile(files.preparing, String(process.pid), PRIVATE_FILE);
      let watch: RunWatch | undefined;
      let canceled = false;
      const cancelSetup = new AbortController();
      const prepared = (async () => {
        const started = await (async () => {
          // Asked while the task already heartbeats and the host answers `preparing`: on a loaded
          // fleet the pool can take longer to answer than the heartbeat timeout.
          await requireLease();
          // An earlier attempt's result on this host is not this attempt's.
          for (const file of [files.outcome, files.exit, files.started, files.record])
            await fs.rm(file, { force: true });
          const repo = await localRepository(request.repo, deps.workDir, request.commit, deps.credential);
          const resolved = await recheck(repo, request, files.log);
          await cleanup.settled(files.tree);
          await addWorktree(repo, request.commit, files.tree);

          const datasetDirs = { ...resolved.datasetDirs, ...(await layOutPinned(input.datasets ?? [])) };

          // Opened here only, in memory: history holds them sealed for the workers.
          const secrets = openSecrets(deps.unsealingKey, experimentId, request.secrets ?? {});
          // Held in memory before anything runs, so every later read of this run's output is scrubbed of them.
          const runSecrets = runSecretValues({ ...request, secrets });
          holdRunSecrets(experimentId, runSecrets);
          // The run's own variables; setup gets them too, but not the secrets (they are the training process's only).
          const own: Record<string, string> = {
            CUDA_VISIBLE_DEVICES: deps.slot.acceleratorClass === 'cpu' ? '' : String(deps.slot.index),
            EXPCTL_EXPERIMENT_ID: experimentId,
            EXPCTL_TIME_BUDGET: String(request.timeBudgetSeconds),
            EXPCTL_ARTIFACT_DIR: files.artifacts,
            PYTHONUNBUFFERED: '1',
            ...(request.configPath ? { EXPCTL_CONFIG: path.join(files.tree, request.configPath) } : {}),
            ...resolvedInputVariables(resolved, files.tree),
            ...datasetVariables(datasetDirs),
          };
          const env: Record<string, string> = { ...request.env, ...own };
          const startedAt = new Date();
          await fs.appendFile(
            files.log,
            `expctl: experiment ${experimentId} attempt ${ctx.info.attempt} on ${deps.slot.slotId} (${deps.slot.name}); ` +
              `commit ${request.commit.slice(0, 12)}; command ${JSON.stringify(request.command)}; started ${startedAt.toISOString()}\n`,
            PRIVATE_FILE,
          );

          // Setup: its own phase and limit; the training command never starts when it fails.
          const plan = await planSetup({
            tree: files.tree,
            envsRoot: path.join(deps.workDir, 'envs'),
            command: request.command,
            setup: request.setup,
          });
          let setup: { seconds: number; cached: boolean } | null = null;
          if (plan) {
            const result = await runSetup({
              plan,
              cwd: files.tree,
              logFile: files.log,
              env,
              secretValues: [...runSecrets, ...workerSecretValues()],
              timeoutSeconds: request.setupTimeoutSeconds,
              killAfterMs,
              signal: cancelSetup.signal,
            });
            if (!result.ok) {
              await removeWorktree(repo, files.tree);
              if (result.canceled) throw new CancelledFailure(`canceled during environment setup of ${experimentId}`);
              await fs.appendFile(
                files.log,
                `expctl: ${result.reason}; the training command was not started\n`,
                PRIVATE_FILE,
              );
              const outcome = await setupFailureOutcome(result, {
                files,
                secretValues: [...runSecrets, ...workerSecretValues()],
                startedAt,
                heartbeatIntervalMs,
              });
              await writeOutcomeFile(deps.workDir, experimentId, outcome);
              return { outcome };
            }
            setup = { seconds: result.seconds, cached: result.cached };
          }
          await fs.appendFile(files.log, `expctl: training starts ${new Date().toISOString()}\n`, PRIVATE_FILE);
          const clock = new ProgressClock(files.log);
          await clock.start();
          const trainingStartedAt = Date.now();

          // The lease may have gone while the run was prepared (this attempt given up as lost, the
          // run re-placed): the last moment to find out before a second copy of it starts.
          if (canceled) {
            await removeWorktree(repo, files.tree);
            throw new CancelledFailure(`canceled before the training of ${experimentId} started`);
          }
          await requireLease().catch(async (error: unknown) => {
            await removeWorktree(repo, files.tree);
            throw error;
          });
          const run = await startRun({
            experimentId,
            support: await containmentSupport(),
            log: files.log,
            cwd: files.tree,
            command: commandInTree(request.command, files.tree),
            // The training process's variables on top of the worker's: the request's, its secrets, expctl's.
            env: { ...request.env, ...secrets, ...own, ...trainingEnvironment(plan) },
            // What the supervisor scrubs from the raw log as it writes it (they are in the training process's environment).
            secretValues: [...runSecrets, ...workerSecretValues()],
            logCapBytes: deps.logCapBytes,
            logTailBytes: deps.logTailBytes,
            files,
            orphanGraceMs: deps.orphanGraceMs,
            // The worker stops the run at the deadline; the supervisor a little later, should no worker watch it.
            deadlineMs: trainingStartedAt + killLimitSeconds(request) * 1000 + SUPERVISOR_DEADLINE_SLACK_MS,
            killAfterMs,
          });
          await fs.writeFile(files.pidFile, String(run.supervisorPid), PRIVATE_FILE);
          const record: RunRecord = {
            experimentId,
            request: publicRequest(request),
            repo,
            startedAt: startedAt.toISOString(),
            trainingStartedAt,
            setup,
            supervisorPid: run.supervisorPid,
            planned: run.containment,
            slotId: input.slot.slotId,
            leaseId: input.leaseId,
          };
          await writeJsonFile(files.record, record);
          return { outcome: undefined, run, record, clock, runSecrets };
        })().finally(() => fs.rm(files.preparing, { force: true }));
        if (started.outcome) return started.outcome;
        const { run, record, clock, runSecrets } = started;
        watch = watchRun(run, record, clock, {
          workDir: deps.workDir,
          killAfterMs,
          heartbeatIntervalMs,
          secretValues: [...runSecrets, ...workerSecretValues()],
          lease: leaseWatch(input.slot.slotId, input.leaseId),
          cleanup,
        });
        if (canceled) watch.cancel();
        return watch.outcome;
      })();
      return follow(
        register(experimentId, {
          leaseId: input.leaseId,
          slotId: input.slot.slotId,
          outcome: prepared,
          latest: () => watch?.latest() ?? preparationHeartbeat(request),
          cancel: () => {
            canceled = true;
            cancelSetup.abort();
            watch?.cancel();
          },
        }),
      );
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

/** Whether a run's public request had secret values: its --secret ones, its secret-looking --env ones. */
function hadSecrets(request: ExperimentRequest): boolean {
  return Object.keys(request.secrets ?? {}).length > 0 || Object.values(request.env).includes(REDACTED);
}

/** The supervisor enforces the kill limit this long after the worker would (it only acts when no worker does). */
const SUPERVISOR_DEADLINE_SLACK_MS = 5000;

export interface AwaitTrainingInput {
  experimentId: string;
  slot: Slot;
  leaseId: string;
}

/** What a worker keeps in the run directory so that it, or a worker started after it, can finish the run. */
interface RunRecord {
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
  leaseId?: string;
}

/** A run being watched by this worker process, whatever activity (if any) is following it now. */
export interface RunWatch {
  /** The lease of the attempt being watched (undefined when its record predates leases). */
  leaseId: string | undefined;
  /** The slot of that lease (undefined when its record predates leases). */
  slotId?: string | undefined;
  outcome: Promise<TrainingOutcome>;
  latest(): TrainingHeartbeat;
  /** An operator's cancel or a revoked lease: every process of the run is killed. */
  cancel(): void;
}

async function writeJsonFile(file: string, value: unknown): Promise<void> {
  await fs.writeFile(`${file}.partial`, JSON.stringify(value), PRIVATE_FILE);
  await fs.rename(`${file}.partial`, file);
}

/**
 * Watches one run to its end: progress from its log, the kill limit, the attached file its
 * supervisor checks; then kills what is left, computes the outcome and keeps it on disk (outcome.json)
 * before anyone is told. The same code finishes runs this worker started and runs it adopted.
 */
function watchRun(
  run: StartedRun,
  record: RunRecord,
  clock: ProgressClock,
  deps: {
    workDir: string;
    killAfterMs: number;
    heartbeatIntervalMs: number;
    secretValues: readonly string[];
    /** Asks the pool about the run's lease; absent, the run is never stopped for it. */
    lease?: { held: () => Promise<boolean>; intervalMs: number };
    cleanup: DeferredCleanup;
  },
): RunWatch {
  const scrub = (text: string) => scrubText(text, deps.secretValues);
  const { request, experimentId, trainingStartedAt } = record;
  const files = runFiles(deps.workDir, experimentId);
  let timedOut = false;
  let canceled = false;
  const stop = (why: 'timeout' | 'cancel') => {
    if (timedOut || canceled) return;
    if (why === 'timeout') timedOut = true;
    else canceled = true;
    void run.stop(deps.killAfterMs);
  };
  const follower = new LogFollower(files.log);
  const heartbeats = {
    count: 0,
    firstAt: null as string | null,
    lastAt: null as string | null,
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
  const beat = async () => {
    const now = new Date();
    await touchAttached(files.attached);
    await follower.poll();
    const elapsed = (Date.now() - trainingStartedAt) / 1000;
    const progress = latestProgress(follower.tailLines());
    latest = {
      phase: 'training',
      // Heartbeats are shown (the progress bar, the Web UI): the raw line is scrubbed like the record.
      progress: progress ? { ...progress, line: scrub(progress.line) } : null,
      elapsedSeconds: Math.round(elapsed * 10) / 10,
      remainingSeconds: Math.max(0, Math.round((request.timeBudgetSeconds - elapsed) * 10) / 10),
      killLimitSeconds: killLimitSeconds(request),
      supervisorPid: run.supervisorPid,
    };
    heartbeats.count++;
    heartbeats.lastAt = now.toISOString();
    heartbeats.firstAt ??= heartbeats.lastAt;
    if (Date.now() > deadline) stop('timeout');
    // Never awaited here: asking the pool can hang through an outage, and beats must go on touching
    // the attached file meanwhile, or the supervisor would take the run for an orphan.
    void checkLease();
  };
  // A run whose train task let go (the server timed it out under load, or during a cut) goes on, to
  // be re-attached; but once the pool has given its lease away, the slot is someone else's. Only a
  // definite answer counts, twice in a row: a pool that cannot be asked (an outage) stops nothing.
  let leaseCheckedAt = Date.now();
  let leaseDenials = 0;
  let leaseCheckInFlight = false;
  const checkLease = async () => {
    if (!deps.lease || leaseCheckInFlight || canceled || timedOut) return;
    if (Date.now() - leaseCheckedAt < deps.lease.intervalMs) return;
    leaseCheckedAt = Date.now();
    leaseCheckInFlight = true;
    const held = await deps.lease
      .held()
      .catch(() => undefined)
      .finally(() => (leaseCheckInFlight = false));
    if (held === undefined) return;
    leaseDenials = held ? 0 : leaseDenials + 1;
    if (leaseDenials < 2) return;
    await fs
      .appendFile(
        files.log,
        `\nexpctl: the pool no longer holds this run's lease; every process of the run is stopped\n`,
      )
      .catch(() => undefined);
    stop('cancel');
  };

  const outcome = (async (): Promise<TrainingOutcome> => {
    await beat();
    // One beat at a time: on a loaded host a beat can outlast the interval.
    let beating = false;
    const ticker = setInterval(() => {
      if (beating) return;
      beating = true;
      void beat()
        .catch(() => undefined)
        .finally(() => (beating = false));
    }, deps.heartbeatIntervalMs);
    let exit: SupervisorExit;
    let finished: { peakMemoryBytes: number | null; oomKills: number | null };
    let trainingEndedAt: number;
    try {
      exit = await run.exited;
      trainingEndedAt = Date.now();
      await clock.stop();
      // The lease is released when the activity returns: not before every process of the run is gone.
      finished = await run.finish();
    } finally {
      clearInterval(ticker);
    }
    await follower.poll();
    timedOut ||= exit.timedOut === true;

    // A supervisor that died without reporting was killed from inside the run (expctl only kills it on cancel or timeout).
    const supervisorKilled = exit.reported === false && !timedOut && !canceled;
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
    if (canceled) throw new CancelledFailure(`canceled; every process of ${experimentId} was killed`);
    // The record keeps the tail, the block and the artifact list; secrets the run could see are scrubbed from them.
    const logTail = capTailBytes(scrub(follower.tailText(LOG_TAIL_BYTES, 40)));
    const artifacts = await writeArtifactManifest(
      files.artifacts,
      { experimentId, commit: request.commit, tag: request.tag, configPath: request.configPath ?? null },
      scrub,
    );
    const metrics = boundMetrics(
      scrubMetrics(parseSummaryBlock(follower.tailLines().join('\n')) ?? null, deps.secretValues),
    );
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
          processEndMs: trainingEndedAt,
          firstProgressMs: clock.firstProgressMs,
          lastProgressMs: clock.lastProgressMs,
        },
        metrics,
      ),
      metrics,
      logTail,
      artifacts,
      heartbeats,
      logPath: files.log,
      startedAt: record.startedAt,
      endedAt: new Date().toISOString(),
    };
    await writeOutcomeFile(deps.workDir, experimentId, result);
    return result;
  })();
  return {
    leaseId: record.leaseId,
    slotId: record.slotId,
    outcome,
    latest: () => latest,
    cancel: () => stop('cancel'),
  };
}

/** The record of a run whose environment setup failed or ran out of time: the training command never ran. */
async function setupFailureOutcome(
  result: Extract<Awaited<ReturnType<typeof runSetup>>, { ok: false }>,
  context: {
    files: ReturnType<typeof runFiles>;
    secretValues: readonly string[];
    startedAt: Date;
    heartbeatIntervalMs: number;
  },
): Promise<TrainingOutcome> {
  const { files, startedAt } = context;
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
    logTail: scrubText(follower.tailLines().slice(-40).join('\n'), context.secretValues),
    artifacts: [],
    heartbeats: { count: 0, firstAt: null, lastAt: null, intervalSeconds: context.heartbeatIntervalMs / 1000 },
    logPath: files.log,
    startedAt: startedAt.toISOString(),
    endedAt: new Date().toISOString(),
  };
}
