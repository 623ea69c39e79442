import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { execa } from 'execa';
import type { TrainingOutcome } from '../domain/experiment.js';
import type { Slot } from '../domain/fleet.js';
import { latestProgress, parseSummaryBlock, type Progress } from '../domain/metrics.js';
import type { ExperimentRequest } from '../domain/request.js';
import { addWorktree, localRepository, removeWorktree } from '../gpu-worker/git.js';
import { LogFollower } from '../gpu-worker/log-follower.js';
import { writeArtifactManifest } from '../gpu-worker/artifacts.js';
import { runFiles } from '../gpu-worker/run-files.js';
import { scrubText, secretValues } from '../domain/redact.js';
import { killLimitSeconds } from '../domain/limits.js';

const SUPERVISOR = fileURLToPath(new URL('../gpu-worker/supervisor.mjs', import.meta.url));

export interface TrainingDeps {
  slot: Slot;
  workDir: string;
  heartbeatIntervalMs?: number;
  /** After SIGTERM, how long the group gets before SIGKILL. */
  killAfterMs?: number;
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

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/** The activity on a slot's own queue: runs one training command under supervision. */
export function createTrainingActivities(deps: TrainingDeps) {
  const heartbeatIntervalMs = deps.heartbeatIntervalMs ?? 2000;
  const killAfterMs = deps.killAfterMs ?? 10_000;

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

      const supervisor = execa(process.execPath, [SUPERVISOR, files.log, files.tree, '--', ...request.command], {
        env,
        detached: true,
        ipc: true,
        serialization: 'json',
        stdin: 'ignore',
        stdout: 'ignore',
        stderr: 'pipe',
        reject: false,
        cleanup: false,
      });
      const pid = supervisor.pid;
      if (pid === undefined) throw ApplicationFailure.retryable('could not start the training supervisor');
      await fs.writeFile(files.pidFile, String(pid));

      let timedOut = false;
      let canceled = false;
      const stop = (why: 'timeout' | 'cancel') => {
        if (timedOut || canceled) return;
        if (why === 'timeout') timedOut = true;
        else canceled = true;
        killGroup(pid, 'SIGTERM');
        setTimeout(() => killGroup(pid, 'SIGKILL'), killAfterMs).unref();
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
      const result = await supervisor;
      clearInterval(ticker);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      await follower.poll();

      const exit = result.ipcOutput.find((message): message is { type: 'exit'; exitCode: number | null; signal: string | null } =>
        typeof message === 'object' && message !== null && (message as { type?: string }).type === 'exit');
      const exitCode = exit ? exit.exitCode : null;
      const signal = exit ? exit.signal : (result.signal ?? 'unknown');
      await removeWorktree(repo, files.tree);
      await fs.rm(files.pidFile, { force: true });
      if (canceled) throw new CancelledFailure(`canceled; the process group of ${experimentId} was killed`);
      // The record keeps the tail; secrets the run could see are scrubbed from it.
      const secrets = secretValues({ ...process.env, ...request.env });
      const logTail = scrubText(follower.tailLines().slice(-40).join('\n'), secrets);
      const artifacts = await writeArtifactManifest(files.artifacts, { experimentId, commit: request.commit, tag: request.tag, configPath: request.configPath ?? null });
      const metrics = parseSummaryBlock(follower.tailLines().join('\n')) ?? null;
      const reported = (key: string) => (typeof metrics?.[key] === 'number' ? (metrics[key] as number) : null);
      return {
        phase: 'training',
        exitCode,
        signal,
        timedOut,
        canceled,
        supervisorKilled: false,
        oomKills: null,
        peakMemoryBytes: null,
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
