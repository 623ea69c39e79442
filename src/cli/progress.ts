import cliProgress from 'cli-progress';
import type { ExperimentHandle } from '../client/experiments.js';
import type { TrainingHeartbeat } from '../activities/training.js';
import { isTerminal } from '../domain/experiment.js';
import type { Progress } from '../domain/metrics.js';

/** Reads the train activity's latest heartbeat (progress parsed from the log) from the server. */
async function latestHeartbeat(
  handle: ExperimentHandle,
): Promise<{ status: string | undefined; heartbeat: TrainingHeartbeat | undefined }> {
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

/** Percent of training done: the script's own `(37.5%)`, else step/total; null when unknown. */
export function percentDone(progress: Progress | null | undefined): number | null {
  if (progress?.percent !== undefined) return Math.max(0, Math.min(100, progress.percent));
  if (progress?.step !== undefined && progress.totalSteps)
    return Math.min(100, (100 * progress.step) / progress.totalSteps);
  return null;
}

/** Time left: the script's own `remaining:` count, else the kill limit's, from the heartbeat. */
function secondsLeft(heartbeat: TrainingHeartbeat | undefined): number | null {
  return heartbeat?.progress?.remainingSeconds ?? heartbeat?.remainingSeconds ?? null;
}

/** The JSON progress event on stderr: every parsed field of the latest progress line. */
export function progressEvent(
  experimentId: string,
  status: string | undefined,
  heartbeat: TrainingHeartbeat | undefined,
): Record<string, unknown> {
  const p = heartbeat?.progress;
  return {
    event: 'progress',
    experiment_id: experimentId,
    status: status ?? null,
    percent: percentDone(p),
    step: p?.step ?? null,
    total_steps: p?.totalSteps ?? null,
    loss: p?.loss ?? null,
    lrm: p?.lrm ?? null,
    dt_ms: p?.dtMs ?? null,
    tok_per_sec: p?.tokPerSec ?? null,
    mfu_percent: p?.mfuPercent ?? null,
    epoch: p?.epoch ?? null,
    remaining_seconds: secondsLeft(heartbeat),
    elapsed_seconds: heartbeat?.elapsedSeconds ?? null,
    kill_limit_remaining_seconds: heartbeat?.remainingSeconds ?? null,
  };
}

/** The values the terminal bar shows: percent done (0-100) and time left, never raw step counts. */
export function barPayload(
  status: string | undefined,
  heartbeat: TrainingHeartbeat | undefined,
): { value: number; payload: Record<string, string | number> } {
  const percent = percentDone(heartbeat?.progress);
  const left = secondsLeft(heartbeat);
  const step = heartbeat?.progress?.step;
  return {
    value: percent === null ? 0 : Math.round(percent * 10) / 10,
    payload: {
      status: status ?? 'waiting',
      percent: percent === null ? '-' : percent.toFixed(1),
      step: step === undefined ? '-' : step,
      loss: heartbeat?.progress?.loss ?? '-',
      left: left === null ? '-' : `${Math.round(left)}s`,
    },
  };
}

/**
 * Shows progress while waiting: a bar with percent done and time left on a terminal, JSON lines
 * on stderr otherwise. Stops by itself when the experiment reaches a terminal state.
 */
export function followProgress(handle: ExperimentHandle, options: { tty: boolean; intervalMs?: number }): () => void {
  let stopped = false;
  let lastLine = '';
  const bar = options.tty
    ? new cliProgress.SingleBar(
        {
          format: '{status} |{bar}| {percent}% | step {step} | loss {loss} | {left} left',
          hideCursor: true,
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let barStarted = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const { status, heartbeat } = await latestHeartbeat(handle);
      if (status && isTerminal(status)) return;
      if (bar) {
        const { value, payload } = barPayload(status, heartbeat);
        if (!barStarted) {
          bar.start(100, value, payload);
          barStarted = true;
        } else {
          bar.update(value, payload);
        }
      } else {
        const line = JSON.stringify(progressEvent(handle.workflowId, status, heartbeat));
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
