import cliProgress from 'cli-progress';
import type { ExperimentHandle } from '../client/experiments.js';
import type { TrainingHeartbeat } from '../activities/training.js';
import { isTerminal } from '../domain/experiment.js';

/** Reads the train activity's latest heartbeat (progress parsed from the log) from the server. */
async function latestHeartbeat(handle: ExperimentHandle): Promise<{ status: string | undefined; heartbeat: TrainingHeartbeat | undefined }> {
  const description = await handle.describe();
  const raw = description.raw.pendingActivities?.find((activity) => activity.activityType?.name === 'runTraining');
  let heartbeat: TrainingHeartbeat | undefined;
  const payload = raw?.heartbeatDetails?.payloads?.[0];
  if (payload?.data) {
    try {
      heartbeat = JSON.parse(Buffer.from(payload.data).toString('utf8')) as TrainingHeartbeat;
    } catch {
      heartbeat = undefined;
    }
  }
  return { status: description.searchAttributes.ExpctlStatus?.[0] as string | undefined, heartbeat };
}

/**
 * Shows progress while waiting: a bar with step and ETA on a terminal, JSON lines on stderr
 * otherwise. Stops by itself when the experiment reaches a terminal state.
 */
export function followProgress(handle: ExperimentHandle, options: { tty: boolean; intervalMs?: number }): () => void {
  let stopped = false;
  let lastLine = '';
  const bar = options.tty
    ? new cliProgress.SingleBar({ format: '{status} |{bar}| {value}/{total} steps | loss {loss} | {elapsed}s elapsed, {remaining}s left', hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic)
    : undefined;
  let barStarted = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const { status, heartbeat } = await latestHeartbeat(handle);
      if (status && isTerminal(status)) return;
      const progress = heartbeat?.progress;
      if (bar) {
        const total = progress?.totalSteps ?? 100;
        const payload = { status: status ?? 'waiting', loss: progress?.loss ?? '-', elapsed: heartbeat?.elapsedSeconds ?? 0, remaining: heartbeat?.remainingSeconds ?? '-' };
        if (!barStarted) {
          bar.start(total, progress?.step ?? 0, payload);
          barStarted = true;
        } else {
          bar.setTotal(total);
          bar.update(progress?.step ?? 0, payload);
        }
      } else {
        const line = JSON.stringify({ event: 'progress', experiment_id: handle.workflowId, status, step: progress?.step ?? null, total_steps: progress?.totalSteps ?? null, loss: progress?.loss ?? null, elapsed_seconds: heartbeat?.elapsedSeconds ?? null, remaining_seconds: heartbeat?.remainingSeconds ?? null });
        if (line !== lastLine) process.stderr.write(`${line}\n`);
        lastLine = line;
      }
    } catch {
      // progress is best effort; the result decides
    }
  };
  const timer = setInterval(() => void tick(), options.intervalMs ?? 1000);
  void tick();
  return () => {
    stopped = true;
    clearInterval(timer);
    if (barStarted) bar?.stop();
  };
}
