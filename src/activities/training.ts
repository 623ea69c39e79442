import fs from 'node:fs/promises';
import path from 'node:path';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { TrainingOutcome } from '../domain/experiment.js';
import type { Slot } from '../domain/fleet.js';
import { latestProgress, parseSummaryBlock, type Progress } from '../domain/metrics.js';
import type { ExperimentRequest } from '../domain/request.js';
import { addWorktree, localRepository, removeWorktree } from '../gpu-worker/git.js';
import { boundMetrics, capTailBytes, LOG_TAIL_BYTES, LogFollower } from '../gpu-worker/log-follower.js';
import { detectContainment, type ContainmentSupport } from '../gpu-worker/containment.js';
import { startRun, type SupervisorExit } from '../gpu-worker/run-process.js';
import { writeArtifactManifest } from '../gpu-worker/artifacts.js';
import { runFiles } from '../gpu-worker/run-files.js';
import { scrubText, secretValues } from '../domain/redact.js';
import { killLimitSeconds } from '../domain/limits.js';
import { computeTimings } from '../domain/timings.js';
import { commandInTree } from '../gpu-worker/confine.js';
import { planSetup, runSetup, trainingEnvironment } from '../gpu-worker/setup.js';
import { ProgressClock } from '../gpu-worker/timings.js';

export interface TrainingDeps {
  slot: Slot;
  workDir: string;
  heartbeatIntervalMs?: number;
  /** After SIGTERM, how long the group gets before SIGKILL. */
  killAfterMs?: number;
  /** How runs are contained on this host (detected once per worker when not given). */
  containment?: ContainmentSupport;
  /** The raw log's cap and kept tail (see run-process.ts for the defaults). */
  logCapBytes?: number;
  logTailBytes?: number;
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
}

export interface RunTrainingInput {
  experimentId: string;
  request: ExperimentRequest;
  slot: Slot;
  leaseId: string;
}

/** The activity on a slot's own queue: runs one training command under supervision. */
export function createTrainingActivities(deps: TrainingDeps) {
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 2000;
  const killAfterMs = deps.killAfterMs ?? 10_000;
  let support: Promise<ContainmentSupport> | undefined;
  const containmentSupport = () => (support ??= deps.containment ? Promise.resolve(deps.containment) : detectContainment(deps.workDir));

  return {
    async runTraining(input: RunTrainingInput): Promise<TrainingOutcome> {
      const ctx = Context.current();
      const { request, experimentId } = input;
      if (input.slot.slotId !== deps.slot.slotId) {
        throw ApplicationFailure.nonRetryable(`lease for ${input.slot.slotId} reached the worker of ${deps.slot.slotId}`);
      }
      const files = runFiles(deps.workDir, experimentId);
      await fs.mkdir(files.artifacts, { recursive: true });
      const repo = await localRepository(request.repo, deps.workDir, request.commit);
      await addWorktree(repo, request.commit, files.tree);

      const env: Record<string, string> = {
        ...request.env,
        CUDA_VISIBLE_DEVICES: deps.slot.acceleratorClass === 'cpu' ? '' : String(deps.slot.index),
        EXPCTL_EXPERIMENT_ID: experimentId,
        EXPCTL_TIME_BUDGET: String(request.timeBudgetSeconds),
        EXPCTL_ARTIFACT_DIR: files.artifacts,
        PYTHONUNBUFFERED: '1',
        ...(request.configPath ? { EXPCTL_CONFIG: path.join(files.tree, request.configPath) } : {}),
      };
      const startedAt = new Date();
      await fs.appendFile(
        files.log,
        `expctl: experiment ${experimentId} attempt ${ctx.info.attempt} on ${deps.slot.slotId} (${deps.slot.name}); ` +
          `commit ${request.commit.slice(0, 12)}; command ${JSON.stringify(request.command)}; started ${startedAt.toISOString()}\n`,
      );

      // Setup: its own phase and limit; the training command never starts when it fails.
      const plan = await planSetup({ tree: files.tree, envsRoot: path.join(deps.workDir, 'envs'), command: request.command, setup: request.setup });
      let setup: { seconds: number; cached: boolean } | null = null;
      if (plan) {
        const setupBeat = setInterval(() => {
          const heartbeat: TrainingHeartbeat = { phase: 'setup', progress: null, elapsedSeconds: 0, remainingSeconds: request.timeBudgetSeconds, killLimitSeconds: killLimitSeconds(request), supervisorPid: null };
          ctx.heartbeat(heartbeat);
        }, heartbeatIntervalMs);
        const result = await runSetup({ plan, cwd: files.tree, logFile: files.log, env, timeoutSeconds: request.setupTimeoutSeconds, killAfterMs, signal: ctx.cancellationSignal });
        clearInterval(setupBeat);
        if (!result.ok) {
          await removeWorktree(repo, files.tree);
          if (result.canceled) throw new CancelledFailure(`canceled during environment setup of ${experimentId}`);
          await fs.appendFile(files.log, `expctl: ${result.reason}; the training command was not started\n`);
          return setupFailureOutcome(result, { files, request, startedAt, heartbeatIntervalMs });
        }
        setup = { seconds: result.seconds, cached: result.cached };
        Object.assign(env, trainingEnvironment(plan));
      }
      await fs.appendFile(files.log, `expctl: training starts ${new Date().toISOString()}\n`);
      const clock = new ProgressClock(files.log);
      await clock.start();
      const trainingStartedAt = Date.now();

      const run = await startRun({
        experimentId,
        support: await containmentSupport(),
        log: files.log,
        cwd: files.tree,
        command: commandInTree(request.command, files.tree),
        env,
        logCapBytes: deps.logCapBytes,
        logTailBytes: deps.logTailBytes,
      });
      const pid = run.supervisorPid;
      await fs.writeFile(files.pidFile, String(pid));

      let timedOut = false;
      let canceled = false;
      const stop = (why: 'timeout' | 'cancel') => {
        if (timedOut || canceled) return;
        if (why === 'timeout') timedOut = true;
        else canceled = true;
        void run.stop(killAfterMs);
      };
      const onCancel = () => stop('cancel');
      ctx.cancellationSignal.addEventListener('abort', onCancel);

      const follower = new LogFollower(files.log);
      const heartbeats = { count: 0, firstAt: null as string | null, lastAt: null as string | null, intervalSeconds: heartbeatIntervalMs / 1000 };
      // The kill limit counts from the training process's start: setup time is not the script's.
      const deadline = trainingStartedAt + killLimitSeconds(request) * 1000;
      const beat = async () => {
        await follower.poll();
        const elapsed = (Date.now() - trainingStartedAt) / 1000;
        const heartbeat: TrainingHeartbeat = {
          phase: 'training',
          progress: latestProgress(follower.tailLines()) ?? null,
          elapsedSeconds: Math.round(elapsed * 10) / 10,
          remainingSeconds: Math.max(0, Math.round((request.timeBudgetSeconds - elapsed) * 10) / 10),
          killLimitSeconds: killLimitSeconds(request),
          supervisorPid: pid,
        };
        ctx.heartbeat(heartbeat);
        heartbeats.count++;
        heartbeats.lastAt = new Date().toISOString();
        heartbeats.firstAt ??= heartbeats.lastAt;
        if (Date.now() > deadline) stop('timeout');
      };
      await beat();
      const ticker = setInterval(() => void beat().catch(() => undefined), heartbeatIntervalMs);
      const exit: SupervisorExit = await run.exited;
      const trainingEndedAt = Date.now();
      await clock.stop();
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      // The lease is released when this activity returns: not before every process of the run is gone.
      const finished = await run.finish();
      clearInterval(ticker);
      await follower.poll();

      // A supervisor that died without reporting was killed from inside the run (expctl only kills it on cancel or timeout).
      const supervisorKilled = exit.reported === false && !timedOut && !canceled;
      const exitCode = exit.exitCode;
      const signal = supervisorKilled ? null : exit.signal;
      if (supervisorKilled) {
        await fs.appendFile(files.log, `\nexpctl: the run's supervisor was killed (${exit.signal ?? 'unknown signal'}) from inside the run; every process of the run was killed\n`);
        await follower.poll();
      }
      await removeWorktree(repo, files.tree);
      await fs.rm(files.pidFile, { force: true });
      if (canceled) throw new CancelledFailure(`canceled; every process of ${experimentId} was killed`);
      // The record keeps the tail; secrets the run could see are scrubbed from it.
      const secrets = secretValues({ ...process.env, ...request.env });
      const logTail = capTailBytes(scrubText(follower.tailText(LOG_TAIL_BYTES, 40), secrets));
      const artifacts = await writeArtifactManifest(files.artifacts, { experimentId, commit: request.commit, tag: request.tag, configPath: request.configPath ?? null });
      const metrics = boundMetrics(parseSummaryBlock(follower.tailLines().join('\n')) ?? null);
      return {
        phase: 'training',
        exitCode,
        signal,
        timedOut,
        canceled,
        supervisorKilled,
        oomKills: finished.oomKills,
        peakMemoryBytes: finished.peakMemoryBytes,
        containment: run.containment.kind,
        timings: computeTimings(
          { setup, processStartMs: trainingStartedAt, processEndMs: trainingEndedAt, firstProgressMs: clock.firstProgressMs, lastProgressMs: clock.lastProgressMs },
          metrics,
        ),
        metrics,
        logTail,
        artifacts,
        heartbeats,
        logPath: files.log,
        startedAt: startedAt.toISOString(),
        endedAt: new Date().toISOString(),
      };
    },
  };
}

/** The record of a run whose environment setup failed or ran out of time: the training command never ran. */
async function setupFailureOutcome(
  result: Extract<Awaited<ReturnType<typeof runSetup>>, { ok: false }>,
  context: { files: ReturnType<typeof runFiles>; request: ExperimentRequest; startedAt: Date; heartbeatIntervalMs: number },
): Promise<TrainingOutcome> {
  const { files, request, startedAt } = context;
  const follower = new LogFollower(files.log);
  await follower.poll();
  const secrets = secretValues({ ...process.env, ...request.env });
  return {
    phase: 'setup',
    exitCode: result.exitCode,
    signal: result.signal,
    timedOut: result.timedOut,
    canceled: false,
    supervisorKilled: false,
    oomKills: null,
    peakMemoryBytes: null,
    timings: computeTimings({ setup: { seconds: result.seconds, cached: false }, processStartMs: null, processEndMs: null, firstProgressMs: null, lastProgressMs: null }, null),
    metrics: null,
    logTail: scrubText(follower.tailLines().slice(-40).join('\n'), secrets),
    artifacts: [],
    heartbeats: { count: 0, firstAt: null, lastAt: null, intervalSeconds: context.heartbeatIntervalMs / 1000 },
    logPath: files.log,
    startedAt: startedAt.toISOString(),
    endedAt: new Date().toISOString(),
  };
}
