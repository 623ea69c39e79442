import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  proxyActivities,
  TimeoutFailure,
} from '@temporalio/workflow';
import type { TrainingOutcome } from '../../domain/experiment.js';
import { hostAnswerSeconds, killLimitSeconds, TRAIN_HEARTBEAT_TIMEOUT_SECONDS } from '../../domain/limits.js';
import { REFUSED_ON_HOST, RUN_NOT_ON_HOST } from '../../shared/constants.js';
import type { HostRunStatus } from '../../activities/run-status.js';
import type { createTrainingActivities, TrainingHeartbeat } from '../../activities/training.js';
import { hostLostSignal, type Lease } from '../definitions.js';
import { hostActivities, pool, type HostActivities } from './activities.js';
import { advance, type ExperimentRun } from './state.js';

type TrainingActivities = ReturnType<typeof createTrainingActivities>;

/**
 * Training heartbeats every few seconds; silence this long means the worker may be gone. A false
 * alarm is harmless: the host is asked, and the run re-attached if it lives.
 */
const TRAIN_HEARTBEAT_TIMEOUT = `${TRAIN_HEARTBEAT_TIMEOUT_SECONDS}s`;
/** A slot queue nobody polls (worker died between lease and start) is detected this fast. */
const TRAIN_SCHEDULE_TO_START = '60s';
/** How long a host gets to answer for a slot it was just granted before it is called lost. */
const RECONCILE_WAIT = '15s';
/** How often one attempt re-attaches to a run its host still holds (each after a silence). */
const MAX_REATTACHES = 20;

/** `refused`: the request failed its checks again on the leased host (REFUSED_ON_HOST). */
export type AttemptResult = { outcome?: TrainingOutcome; lost?: string; infra?: string; refused?: string };

/**
 * One attempt on a lease: the environment record, then training. A revoked lease ends the attempt
 * in any state, without waiting for a dead worker to confirm (an operator's cancel still waits for
 * the process group to be killed: the revocation watch is not cancellable).
 */
export async function attemptOn(run: ExperimentRun, granted: Lease): Promise<AttemptResult> {
  const scope = new CancellationScope();
  run.attemptScope = scope;
  const work = scope.run(async (): Promise<AttemptResult> => {
    const refused = await captureEnvironment(run, granted);
    if (refused) return refused;
    await advance(run, 'running', `on ${granted.slot.slotId}`, { attempts: run.snapshot.attempts });
    return supervise(run, granted);
  });
  const revocation = CancellationScope.nonCancellable(() => condition(() => run.revoked !== undefined)).then(
    () => undefined,
  );
  try {
    const result = await Promise.race([work, revocation]);
    if (result !== undefined) return result;
    work.catch(() => undefined);
    return { lost: run.revoked!.reason };
  } catch (error) {
    if (run.revoked) return { lost: run.revoked.reason };
    throw error;
  } finally {
    run.attemptScope = undefined;
  }
}

/** The leased host records the run's environment; an attempt result when it cannot, otherwise nothing. */
async function captureEnvironment(run: ExperimentRun, granted: Lease): Promise<AttemptResult | undefined> {
  try {
    run.pending.environment = await hostActivities(granted.hostQueue, RECONCILE_WAIT).captureEnvironment(run.request);
    return undefined;
  } catch (error) {
    if (!(error instanceof ActivityFailure) || isCancellation(error)) throw error;
    if (error.cause instanceof ApplicationFailure && error.cause.type === REFUSED_ON_HOST)
      return { refused: error.cause.message };
    if (error.cause instanceof TimeoutFailure)
      return hostLost(
        granted,
        `the host ${granted.slot.host} did not answer within ${RECONCILE_WAIT} after granting its slot`,
      );
    return { infra: error.cause?.message ?? error.message };
  }
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

/** Runs training on the leased slot; when the worker stops answering, asks its host before giving up. */
async function supervise(run: ExperimentRun, granted: Lease): Promise<AttemptResult> {
  const { experimentId, request, snapshot } = run;
  const training = trainingActivities(run, granted);
  const input = {
    experimentId,
    request,
    slot: granted.slot,
    leaseId: granted.leaseId,
    attempt: snapshot.attempts,
    ...(snapshot.datasetVersions?.length ? { datasets: snapshot.datasetVersions } : {}),
  };
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
      const silence = `the worker on ${granted.slot.host} stopped answering (${error.cause.timeoutType ?? 'timeout'} on ${granted.slot.slotId})`;
      const lastBeat =
        error.cause.timeoutType === 'HEARTBEAT'
          ? (error.cause.lastHeartbeatDetails as TrainingHeartbeat | undefined)?.sentAt
          : undefined;
      const wait = `${hostAnswerSeconds(lastBeat, Date.now())}s`;
      const status = await askHost(run, granted, wait);
      if (status === null) return hostLost(granted, `${silence}, and the host did not answer within ${wait}`);
      if (status.state === 'finished') return { outcome: status.outcome };
      if (status.state === 'unknown') return { lost: `${silence}; the host answered but ${status.why}` };
      // The host holds the run (its worker restarted, or the server was away): follow it again.
      if (reattaches >= MAX_REATTACHES)
        return { lost: `${silence}; re-attached ${MAX_REATTACHES} times without the run ending` };
      follow = () => training.awaitTraining({ experimentId, slot: granted.slot, leaseId: granted.leaseId });
    }
  }
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
