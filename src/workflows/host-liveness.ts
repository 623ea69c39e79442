import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setHandler,
  TimeoutFailure,
  workflowInfo,
} from '@temporalio/workflow';
import type { createLivenessActivities, LivenessBeat } from '../activities/liveness.js';
import { POOL_WORKFLOW_ID } from '../shared/constants.js';
import { hostLostSignal, livenessLimitSignal, NOT_THIS_INCARNATION, type HostLivenessInput } from './definitions.js';

type Liveness = ReturnType<typeof createLivenessActivities>;

/** How long a host gets to answer the probe after its heartbeats stopped: a live worker answers at once. */
const PROBE_MS = 3_000;

/**
 * A timeout seen this much later than the limit after the last heartbeat means the server (or this
 * workflow) was away, not the host: the host gets a fresh limit rather than a probe it may not yet
 * be able to answer (its pollers reconnect with backoff).
 */
const OUTAGE_SLACK_MS = 5_000;

/** One liveness workflow per host incarnation: a restarted worker is watched by a new one. */
export function livenessWorkflowId(host: string, incarnation: string): string {
  return `host-${host}-${incarnation}`;
}

/** How one watch of the host ended. */
type Watch =
  | { kind: 'limit-changed' }
  | { kind: 'leaving' }
  | { kind: 'not-this-incarnation'; message: string }
  | { kind: 'silent'; lastAt: number };

/**
 * Judges one host incarnation's liveness outside the pool's history. A long activity on the host's
 * queue heartbeats while the worker lives (heartbeats write no history); when it times out, the
 * host is probed once more and, silent again, reported lost to the pool. Then the workflow ends.
 * It ends quietly when another incarnation answers (a restarted worker is watched by its own).
 */
export async function hostLivenessWorkflow(input: HostLivenessInput): Promise<void> {
  let limitMs = input.limitMs;
  let limitChanged = false;
  setHandler(livenessLimitSignal, ({ limitMs: next }) => {
    if (next === limitMs) return;
    limitMs = next;
    limitChanged = true;
  });
  for (;;) {
    if (workflowInfo().continueAsNewSuggested) return continueAsNew<typeof hostLivenessWorkflow>({ ...input, limitMs });
    limitChanged = false;
    const watch = await watchOnce(input, limitMs, () => limitChanged);
    if (watch.kind === 'limit-changed') continue;
    if (watch.kind === 'not-this-incarnation') {
      log.info('another incarnation answers on this host queue; this one is gone', { message: watch.message });
      return;
    }
    if (watch.kind === 'leaving') return reportLost(input, `worker on ${input.host} shut down`);
    const now = Date.now();
    if (now - watch.lastAt > limitMs + OUTAGE_SLACK_MS) {
      log.warn('liveness timed out long after the limit: the server was away; the host gets a fresh limit', {
        host: input.host,
        silentMs: now - watch.lastAt,
      });
      continue;
    }
    const answer = await probe(input);
    if (answer === 'alive') continue;
    if (answer === 'not-this-incarnation') return;
    const silentMs = Date.now() - watch.lastAt;
    return reportLost(
      input,
      `no heartbeat from ${input.host} for ${Math.round(silentMs / 1000)}s (last at ${new Date(watch.lastAt).toISOString()}); the worker is lost`,
    );
  }
}

/** Runs the long heartbeating activity until it ends, or until the limit changes (then it is cancelled). */
async function watchOnce(input: HostLivenessInput, limitMs: number, limitChanged: () => boolean): Promise<Watch> {
  const scheduledAt = Date.now();
  const host = proxyActivities<Liveness>({
    taskQueue: input.hostQueue,
    // A worker that never picks it up is as silent as one that stops heartbeating.
    scheduleToStartTimeout: limitMs,
    heartbeatTimeout: limitMs,
    startToCloseTimeout: '3650 days',
    retry: { maximumAttempts: 1 },
    cancellationType: ActivityCancellationType.TRY_CANCEL,
  });
  const scope = new CancellationScope();
  let ended: Watch | undefined;
  const watching = scope
    .run(() => host.keepHostAlive({ host: input.host, incarnation: input.incarnation }))
    .then(
      () => (ended = { kind: 'leaving' }),
      (error: unknown) => (ended = failedWatch(error, scheduledAt)),
    );
  await condition(() => ended !== undefined || limitChanged());
  if (ended) return ended;
  scope.cancel();
  await watching;
  return { kind: 'limit-changed' };
}

/** What the long activity's failure says: another incarnation answered, or the host went silent (and since when). */
function failedWatch(error: unknown, scheduledAt: number): Watch {
  const cause = error instanceof ActivityFailure ? error.cause : undefined;
  if (cause instanceof ApplicationFailure && cause.type === NOT_THIS_INCARNATION)
    return { kind: 'not-this-incarnation', message: cause.message };
  const beat =
    cause instanceof TimeoutFailure && cause.timeoutType === 'HEARTBEAT'
      ? (cause.lastHeartbeatDetails as LivenessBeat | undefined)
      : undefined;
  return { kind: 'silent', lastAt: typeof beat?.at === 'number' ? beat.at : scheduledAt };
}

/** One short question to the host before it is declared lost. */
async function probe(input: HostLivenessInput): Promise<'alive' | 'silent' | 'not-this-incarnation'> {
  const host = proxyActivities<Liveness>({
    taskQueue: input.hostQueue,
    scheduleToCloseTimeout: PROBE_MS,
    retry: { initialInterval: '500ms', backoffCoefficient: 1 },
  });
  try {
    await host.probeHost({ host: input.host, incarnation: input.incarnation });
    return 'alive';
  } catch (error) {
    const cause = error instanceof ActivityFailure ? error.cause : undefined;
    return cause instanceof ApplicationFailure && cause.type === NOT_THIS_INCARNATION
      ? 'not-this-incarnation'
      : 'silent';
  }
}

/** Tells the pool this incarnation is gone (it ignores the news about an incarnation it no longer has). */
async function reportLost(input: HostLivenessInput, reason: string): Promise<void> {
  log.warn('host lost', { host: input.host, reason });
  await getExternalWorkflowHandle(POOL_WORKFLOW_ID)
    .signal(hostLostSignal, { host: input.host, incarnation: input.incarnation, reason })
    .catch(() => undefined); // no pool: nothing holds this host
}
