import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  CancelledFailure,
  condition,
  isCancellation,
  proxyActivities,
  sleep,
  TimeoutFailure,
} from '@temporalio/workflow';
import type { EnvironmentRecord } from '../../catalog/record.js';
import type { TrainingOutcome } from '../../domain/experiment.js';
import {
  hostAnswerSeconds,
  HOST_RECONNECT_SECONDS,
  killLimitSeconds,
  replaceNotBeforeMs,
  TRAIN_HEARTBEAT_TIMEOUT_SECONDS,
} from '../../domain/limits.js';
import { REFUSED_ON_HOST, RUN_NOT_ON_HOST } from '../../shared/constants.js';
import type { HostRunStatus } from '../../activities/run-status.js';
import type { createTrainingActivities, TrainingHeartbeat, TrainingResult } from '../../activities/training.js';
import { hostLostSignal, type Lease } from '../definitions.js';
import { hostActivities, pool, type HostActivities } from './activities.js';
import { mark, publish, type ExperimentRun } from './state.js';

type TrainingActivities = ReturnType<typeof createTrainingActivities>;

/**
 * Training heartbeats every few seconds; silence this long means the worker may be gone. A false
 * alarm is harmless: the host is asked, and the run re-attached if it lives.
 */
const TRAIN_HEARTBEAT_TIMEOUT = `${TRAIN_HEARTBEAT_TIMEOUT_SECONDS}s`;
/** A slot queue nobody polls (worker died between lease and start) is detected this fast. */
const TRAIN_SCHEDULE_TO_START = '60s';
/** How long a host gets to pick up the question of a re-attached run's environment. */
const RECONCILE_WAIT = '15s';
/** How often one attempt re-attaches to a run its host still holds (each after a silence). */
const MAX_REATTACHES = 20;

/**
 * `refused`: the request failed its checks again on the leased host (REFUSED_ON_HOST). A lost
 * attempt says when its host has surely stopped the run (`replaceAfterMs`, epoch ms: its fencing
 * time passed) and how long it trained by its last heartbeat (`trainedSeconds`).
 */
export type AttemptResult = {
  outcome?: TrainingOutcome;
  lost?: string;
  infra?: string;
  refused?: string;
  replaceAfterMs?: number;
  trainedSeconds?: number;
};

/** What an attempt carries over from earlier ones: restore their checkpoint, and the training time they used. */
export interface AttemptCarry {
  resume?: boolean;
  trainedSeconds?: number;
  /** `expctl retry --resume`: the experiment whose latest checkpoint the first attempt restores. */
  resumeFrom?: string;
}

/** What the per-attempt record learns while the attempt goes: its re-attaches, its training seconds by its last heartbeat. */
export interface AttemptEvents {
  reattached(): void;
  trained(seconds: number): void;
}

/**
 * One attempt on a lease: training (the leased host records the environment with it). A revoked lease ends the attempt
 * in any state, without waiting for a dead worker to confirm (an operator's cancel still waits for
 * the process group to be killed: the revocation watch is not cancellable).
 */
export async function attemptOn(
  run: ExperimentRun,
  granted: Lease,
  carry: AttemptCarry = {},
  events: AttemptEvents = { reattached: () => undefined, trained: () => undefined },
): Promise<AttemptResult> {
  const scope = new CancellationScope();
  run.attemptScope = scope;
  const work = scope.run(async (): Promise<AttemptResult> => {
    // Running from the grant: the catalog hears of it with its next record (the snapshot at once).
    mark(run, 'running', `on ${granted.slot.slotId}`);
    run.pending.attempts = run.snapshot.attempts;
    publish(run);
    const result = await supervise(run, granted, carry, events);
    if (result.outcome) result.outcome = await keepEnvironment(run, granted, result.outcome);
    return result;
  });
  const revocation = CancellationScope.nonCancellable(() => condition(() => run.revoked !== undefined)).then(
    () => undefined,
  );
  try {
    const result = await Promise.race([work, revocation]);
    if (result !== undefined) return result;
    work.catch(() => undefined);
    return revokedNow(run, granted);
  } catch (error) {
    if (run.revoked) return revokedNow(run, granted);
    keepCanceledEnvironment(run, error);
    throw error;
  } finally {
    run.attemptScope = undefined;
  }
}

/** A canceled train step gives back the environment its host recorded (the details of its cancellation). */
function keepCanceledEnvironment(run: ExperimentRun, error: unknown): void {
  if (!(error instanceof ActivityFailure) || !(error.cause instanceof CancelledFailure)) return;
  const [details] = error.cause.details as [{ environment?: EnvironmentRecord } | undefined];
  if (details?.environment) run.pending.environment = details.environment;
}

/**
 * The pool revoked the lease (its host went silent past the pool's limit, or was reported lost):
 * the host's worker can confirm the lease no more from now, so its run stops within its fencing time.
 */
function revokedNow(run: ExperimentRun, granted: Lease): AttemptResult {
  return { lost: run.revoked!.reason, replaceAfterMs: replaceNotBeforeMs(Date.now(), granted.fencing) };
}

/**
 * The environment the leased host recorded with the outcome goes to the record, not the outcome. A
 * re-attached run's outcome has none: its host is asked for it (none when it cannot say).
 */
async function keepEnvironment(run: ExperimentRun, granted: Lease, result: TrainingResult): Promise<TrainingOutcome> {
  const { environment, ...outcome } = result;
  if (!environment && run.pending.environment) return outcome;
  try {
    run.pending.environment =
      environment ?? (await hostActivities(granted.hostQueue, RECONCILE_WAIT).captureEnvironment(run.request));
  } catch (error) {
    if (!(error instanceof ActivityFailure) || isCancellation(error)) throw error;
  }
  return outcome;
}

function trainingActivities(run: ExperimentRun, granted: Lease) {
  return proxyActivities<TrainingActivities>({
    taskQueue: granted.slot.taskQueue,
    scheduleToStartTimeout: TRAIN_SCHEDULE_TO_START,
    // Setup and the kill limit are enforced by the worker; this only bounds a worker that stopped enforcing them.
    startToCloseTimeout: `${Math.ceil(run.request.setupTimeoutSeconds + killLimitSeconds(run.request) + 300)}s`,
    heartbeatTimeout: TRAIN_HEARTBEAT_TIMEOUT,
    retry: { maximumAttempts: 1 },
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
}

/**
 * Runs training on the leased slot; when the worker stops answering, asks its host before giving
 * up, and keeps asking until the host's fencing time has surely passed: a restarted worker
 * re-attaches within that window, and a run declared lost after it is no longer trained there.
 */
async function supervise(
  run: ExperimentRun,
  granted: Lease,
  carry: AttemptCarry,
  events: AttemptEvents,
): Promise<AttemptResult> {
  const { experimentId, request, snapshot } = run;
  const training = trainingActivities(run, granted);
  const input = {
    experimentId,
    request,
    slot: granted.slot,
    slots: granted.slots,
    leaseId: granted.leaseId,
    attempt: snapshot.attempts,
    ...(snapshot.datasetVersions?.length ? { datasets: snapshot.datasetVersions } : {}),
    ...(carry.resume ? { resume: true } : {}),
    ...(carry.trainedSeconds ? { trainedSeconds: carry.trainedSeconds } : {}),
    ...(carry.resumeFrom ? { resumeFrom: { experimentId: carry.resumeFrom } } : {}),
  };
  let trainedSeconds: number | undefined;
  let follow = () => training.runTraining(input);
  for (let reattaches = 0; ; reattaches++) {
    try {
      return { outcome: await follow() };
    } catch (error) {
      if (!(error instanceof ActivityFailure) || isCancellation(error)) throw error;
      if (error.cause instanceof ApplicationFailure && error.cause.type === RUN_NOT_ON_HOST)
        return { lost: error.cause.message };
      if (error.cause instanceof ApplicationFailure && error.cause.type === REFUSED_ON_HOST)
        return { refused: error.cause.message };
      if (!(error.cause instanceof TimeoutFailure)) return { infra: error.cause?.message ?? error.message };
      const silencedAt = Date.now();
      const silence = `the worker on ${granted.slot.host} stopped answering (${error.cause.timeoutType ?? 'timeout'} on ${granted.slot.slotId})`;
      const heartbeat =
        error.cause.timeoutType === 'HEARTBEAT'
          ? (error.cause.lastHeartbeatDetails as TrainingHeartbeat | undefined)
          : undefined;
      // The host recorded the environment while the run trained: kept, whatever becomes of the run.
      if (heartbeat?.environment) run.pending.environment = heartbeat.environment;
      if (heartbeat?.phase !== 'setup' && typeof heartbeat?.elapsedSeconds === 'number') {
        trainedSeconds = heartbeat.elapsedSeconds;
        // Kept at once: a revocation while the host is asked ends the attempt without this function.
        events.trained(trainedSeconds);
      }
      const trained = trainedSeconds === undefined ? {} : { trainedSeconds };
      const wait = `${hostAnswerSeconds(heartbeat?.sentAt, Date.now())}s`;
      const status = (await askHost(run, granted, wait)) ?? (await untilFenced(run, granted, silencedAt));
      if (status === null) {
        const fencedFor = Math.round((Date.now() - silencedAt) / 1000);
        return {
          ...(await hostLost(
            granted,
            `${silence}, and the host did not answer within ${wait}, nor in the ${fencedFor}s its fencing time allows`,
          )),
          ...trained,
          replaceAfterMs: Date.now(),
        };
      }
      if (status.state === 'finished') return { outcome: status.outcome };
      if (status.state === 'unknown') return { lost: `${silence}; the host answered but ${status.why}`, ...trained };
      events.reattached();
      // The host holds the run (its worker restarted, or the server was away): follow it again.
      if (reattaches >= MAX_REATTACHES)
        return { lost: `${silence}; re-attached ${MAX_REATTACHES} times without the run ending` };
      follow = () => training.awaitTraining({ experimentId, slot: granted.slot, leaseId: granted.leaseId });
    }
  }
}

/**
 * A silent host that did not answer may still train the run until its supervisor fences it (the
 * lease unconfirmed for the host's fencing time). Until that has surely passed, counted from the
 * silence, the host is asked again (a worker restarted meanwhile answers and re-attaches); null
 * once the window closes without an answer.
 */
async function untilFenced(run: ExperimentRun, granted: Lease, silencedAt: number): Promise<HostRunStatus | null> {
  const closesAt = replaceNotBeforeMs(silencedAt, granted.fencing);
  while (Date.now() < closesAt) {
    const askedAt = Date.now();
    const left = Math.max(1, Math.ceil((closesAt - askedAt) / 1000));
    const status = await askHost(run, granted, `${Math.min(HOST_RECONNECT_SECONDS, left)}s`);
    if (status !== null) return status;
    // An ask refused at once (no poller, a failure) is not repeated in a tight loop.
    const pause = Math.min(2000, closesAt - Date.now());
    if (Date.now() - askedAt < 2000 && pause > 0) await sleep(pause);
  }
  return null;
}

/**
 * Asked before a run is called lost: a worker restart or a server outage is not a lost run, and
 * the host keeps a finished run's result on disk. Null when the host does not answer in time.
 */
async function askHost(run: ExperimentRun, granted: Lease, wait: string): Promise<HostRunStatus | null> {
  try {
    // Bounded end to end: across a cut link the server can hand the task to a poll whose host
    // never hears of it, and only a whole-call limit ends that wait (a queue limit does not).
    const host = proxyActivities<HostActivities>({
      taskQueue: granted.hostQueue,
      scheduleToCloseTimeout: wait,
      retry: { initialInterval: '1s', maximumAttempts: 3 },
    });
    return await host.runStatus(run.experimentId);
  } catch (error) {
    if (error instanceof ActivityFailure && !isCancellation(error)) return null;
    throw error;
  }
}

/** The host is unreachable: the pool takes it offline in the same step, so nothing is placed there again. */
async function hostLost(granted: Lease, reason: string): Promise<{ lost: string }> {
  await pool()
    .signal(hostLostSignal, { host: granted.slot.host, reason })
    .catch(() => undefined);
  return { lost: reason };
}
