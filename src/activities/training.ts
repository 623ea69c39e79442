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
  progress: Progress | null;
  elapsedSeconds: number;
  remainingSeconds: number;
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

      const run = await startRun({
        experimentId,
        support: await containmentSupport(),
        log: files.log,
        cwd: files.tree,
        command: request.command,
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
      const deadline = startedAt.getTime() + killLimitSeconds(request) * 1000;
      const beat = async () => {
        await follower.poll();
        const elapsed = (Date.now() - startedAt.getTime()) / 1000;
        const heartbeat: TrainingHeartbeat = {
          progress: latestProgress(follower.tailLines()) ?? null,
          elapsedSeconds: Math.round(elapsed * 10) / 10,
          remainingSeconds: Math.max(0, Math.round((request.timeBudgetSeconds - elapsed) * 10) / 10),
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
      const reported = (key: string) => (typeof metrics?.[key] === 'number' ? (metrics[key] as number) : null);
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
        timings: {
          setupSeconds: null,
          setupCached: null,
          startupSeconds: reported('startup_seconds'),
          trainingSeconds: reported('training_seconds'),
          evaluationSeconds: reported('eval_seconds'),
          totalSeconds: reported('total_seconds'),
          processSeconds: (Date.now() - startedAt.getTime()) / 1000,
        },
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
