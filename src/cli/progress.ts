import cliProgress from 'cli-progress';
import type { LoadedDataConverter, Payload } from '@temporalio/common';
import { z } from 'zod';
import type { ExperimentHandle } from '../client/experiments.js';
import type { TrainingHeartbeat } from '../activities/training.js';
import { isTerminal } from '../domain/experiment.js';
import type { Progress } from '../domain/metrics.js';
import { safeJson, safeText } from './output.js';

const count = z.number().finite();

/** The fields of a heartbeat the CLI shows; anything else a worker adds is ignored. */
const heartbeatSchema = z.object({
  phase: z.enum(['setup', 'training']).optional(),
  progress: z
    .object({
      step: count.optional(),
      totalSteps: count.optional(),
      percent: count.optional(),
      loss: count.optional(),
      lrm: count.optional(),
      dtMs: count.optional(),
      tokPerSec: count.optional(),
      mfuPercent: count.optional(),
      epoch: count.optional(),
      remainingSeconds: count.optional(),
      line: z.string(),
    })
    .nullable(),
  elapsedSeconds: count,
  remainingSeconds: count,
  killLimitSeconds: count.optional(),
  supervisorPid: z.number().int().nullable(),
  sentAt: z.string().optional(),
});

/** Heartbeat details the CLI could not read: the codec refused them, or they are not a training heartbeat. */
export class UnreadableHeartbeatError extends Error {}

/**
 * The train activity's heartbeat as the server returns it: encoded by the payload codec (encrypted),
 * so decoded by the client's own data converter, then checked.
 */
export async function decodeHeartbeat(
  converter: Pick<LoadedDataConverter, 'payloadConverter' | 'payloadCodecs'>,
  payload: Payload,
): Promise<TrainingHeartbeat> {
  let decoded = [payload];
  try {
    // Codecs encode in order, so they decode in reverse.
    for (const codec of [...converter.payloadCodecs].reverse()) decoded = await codec.decode(decoded);
  } catch (error) {
    throw new UnreadableHeartbeatError(`heartbeat not decoded: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = converter.payloadConverter.fromPayload(decoded[0]!);
  } catch (error) {
    throw new UnreadableHeartbeatError(`heartbeat not converted: ${(error as Error).message}`);
  }
  const parsed = heartbeatSchema.safeParse(value);
  if (!parsed.success)
    throw new UnreadableHeartbeatError(
      `heartbeat is not a training heartbeat: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`,
    );
  return parsed.data as TrainingHeartbeat;
}

/** What one look at a run gives: its status, and its latest heartbeat or why that could not be read. */
interface Sample {
  status: string | undefined;
  heartbeat: TrainingHeartbeat | undefined;
  unreadable?: string;
}

/** Reads the train activity's latest heartbeat (progress parsed from the log) from the server. */
async function latestHeartbeat(handle: ExperimentHandle): Promise<Sample> {
  const description = await handle.describe();
  const status = description.searchAttributes.ExpctlStatus?.[0] as string | undefined;
  const raw = description.raw.pendingActivities?.find((activity) => activity.activityType?.name === 'runTraining');
  const payload = raw?.heartbeatDetails?.payloads?.[0];
  if (!payload) return { status, heartbeat: undefined };
  try {
    return { status, heartbeat: await decodeHeartbeat(handle.client.options.loadedDataConverter, payload) };
  } catch (error) {
    if (!(error instanceof UnreadableHeartbeatError)) throw error;
    return { status, heartbeat: undefined, unreadable: error.message };
  }
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

/** Time until the worker kills the run (its kill limit less the time it has run); null when not sent. */
function killLimitLeft(heartbeat: TrainingHeartbeat | undefined): number | null {
  if (heartbeat?.killLimitSeconds === undefined) return null;
  return Math.max(0, Math.round((heartbeat.killLimitSeconds - heartbeat.elapsedSeconds) * 10) / 10);
}

/**
 * The JSON progress event on stderr: every parsed field of the latest progress line. `labels`
 * (a batch's ID and the variant's number) follow the experiment ID.
 */
export function progressEvent(
  experimentId: string,
  status: string | undefined,
  heartbeat: TrainingHeartbeat | undefined,
  labels: Record<string, string | number> = {},
): Record<string, unknown> {
  const p = heartbeat?.progress;
  return {
    event: 'progress',
    experiment_id: experimentId,
    ...labels,
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
    kill_limit_remaining_seconds: killLimitLeft(heartbeat),
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

/** One run to follow, and what names it on its line (empty for a single run). */
export interface FollowedRun {
  handle: ExperimentHandle;
  /** Shown before the bar on a terminal, e.g. `v2 exp-…-v2`. */
  label?: string;
  /** Added to each of its JSON events, e.g. `{ batch_id, variant }`. */
  labels?: Record<string, string | number>;
}

/** Where samples go: bars on a terminal, JSON lines otherwise. */
interface ProgressView {
  /** `final`: the run reached a terminal state; this is its last sample. */
  show(run: FollowedRun, sample: Sample, final: boolean): void;
  stop(): void;
}

/** One bar per run on stderr (a multibar: one line each for a batch's variants), left showing how each ended. */
function barView(): ProgressView {
  const multibar = new cliProgress.MultiBar(
    {
      format: '{label}{status} |{bar}| {percent}% | step {step} | loss {loss} | {left} left',
      hideCursor: true,
      stream: process.stderr,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<FollowedRun, cliProgress.SingleBar>();
  return {
    show(run, sample) {
      const { value, payload } = barPayload(
        sample.unreadable ? 'progress unreadable' : sample.status,
        sample.heartbeat,
      );
      const shown = { ...payload, label: run.label ? `${safeText(run.label)} ` : '' };
      const bar = bars.get(run);
      if (bar) bar.update(value, shown);
      else bars.set(run, multibar.create(100, value, shown));
    },
    stop: () => multibar.stop(),
  };
}

/**
 * JSON lines on stderr: a line whenever a run's event changes; an unreadable heartbeat is said once
 * per run. A run's end is the result's to say (stdout), not a progress event.
 */
function jsonView(): ProgressView {
  const last = new Map<FollowedRun, string>();
  const saidUnreadable = new Set<FollowedRun>();
  const write = (value: unknown) => process.stderr.write(`${safeJson(value, 0)}\n`);
  return {
    show(run, sample, final) {
      if (final) return;
      if (sample.unreadable && !saidUnreadable.has(run)) {
        saidUnreadable.add(run);
        write({
          event: 'progress_unreadable',
          experiment_id: run.handle.workflowId,
          ...run.labels,
          message: sample.unreadable,
        });
      }
      const line = safeJson(progressEvent(run.handle.workflowId, sample.status, sample.heartbeat, run.labels), 0);
      if (line !== last.get(run)) process.stderr.write(`${line}\n`);
      last.set(run, line);
    },
    stop: () => undefined,
  };
}

/**
 * Shows the progress of runs while waiting: a bar each with percent done and time left on a
 * terminal, JSON lines on stderr otherwise. A run stops being followed when it reaches a terminal
 * state; a run not started yet (a batch's later variants) is looked for again at the next tick.
 */
export function followRuns(runs: FollowedRun[], options: { tty: boolean; intervalMs?: number }): () => void {
  const view = options.tty ? barView() : jsonView();
  const ended = new Set<FollowedRun>();
  // Once training ends (evaluating, then the result) the train task and its heartbeat are gone:
  // the last line it read is still the run's latest progress.
  const lastHeartbeat = new Map<FollowedRun, TrainingHeartbeat>();
  let stopped = false;
  let ticking = false;
  const look = async (run: FollowedRun) => {
    try {
      const sample = await latestHeartbeat(run.handle);
      if (stopped) return;
      if (sample.heartbeat) lastHeartbeat.set(run, sample.heartbeat);
      else if (!sample.unreadable) sample.heartbeat = lastHeartbeat.get(run);
      const final = sample.status !== undefined && isTerminal(sample.status);
      if (final) ended.add(run);
      view.show(run, sample, final);
    } catch {
      // Not started yet (WorkflowNotFound) or no answer: progress is best effort, the result decides.
    }
  };
  const tick = async () => {
    // One tick at a time: on a loaded host describing every run can outlast the interval.
    if (stopped || ticking) return;
    ticking = true;
    try {
      await Promise.all(runs.filter((run) => !ended.has(run)).map(look));
    } finally {
      ticking = false;
    }
  };
  const timer = setInterval(() => void tick(), options.intervalMs ?? 1000);
  void tick();
  return () => {
    stopped = true;
    clearInterval(timer);
    view.stop();
  };
}

/** Follows one run (`expctl run`, `expctl wait ID`). */
export function followProgress(handle: ExperimentHandle, options: { tty: boolean; intervalMs?: number }): () => void {
  return followRuns([{ handle }], options);
}
