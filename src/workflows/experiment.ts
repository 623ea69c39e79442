import {
  ActivityFailure, ApplicationFailure, CancellationScope, condition, getExternalWorkflowHandle, isCancellation,
  proxyActivities, setHandler, sleep, TimeoutFailure, upsertSearchAttributes,
  ActivityCancellationType,
} from '@temporalio/workflow';
import type { RecordUpdate } from '../catalog/record.js';
import { DEFAULT_METRIC, type TagDecision } from '../domain/decision.js';
import { type ExperimentResult, type ExperimentStatus, type TerminalStatus, type TrainingOutcome } from '../domain/experiment.js';
import { killLimitSeconds } from '../domain/limits.js';
import { classifyTraining } from '../domain/classify.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import type { createControlActivities } from '../activities/control.js';
import type { createHostActivities } from '../activities/host.js';
import type { createTrainingActivities } from '../activities/training.js';
import {
  experimentStateQuery, leaseGrantedSignal, leaseRevokedSignal, releaseLeaseSignal, requestLeaseSignal, type Lease,
} from './definitions.js';
import type { ExperimentInput, ExperimentSnapshot } from './experiment-state.js';

type ControlActivities = ReturnType<typeof createControlActivities>;
type HostActivities = ReturnType<typeof createHostActivities>;
type TrainingActivities = ReturnType<typeof createTrainingActivities>;

/** Infrastructure failures of the train step (not the training itself) are retried this often. */
const INFRA_ATTEMPTS = 3;
/** Training heartbeats every few seconds; silence this long means the worker is gone. */
const TRAIN_HEARTBEAT_TIMEOUT = '20s';
/** A slot queue nobody polls (worker died between lease and start) is detected this fast. */
const TRAIN_SCHEDULE_TO_START = '60s';

const control = proxyActivities<ControlActivities>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 8 },
});

function hostActivities(hostQueue: string) {
  return proxyActivities<HostActivities>({
    taskQueue: hostQueue,
    scheduleToCloseTimeout: '5m',
    startToCloseTimeout: '2m',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: 5 },
  });
}

class RunEnded extends Error {
  constructor(
    readonly status: TerminalStatus,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** validate → acquire a lease → train on the leased slot → evaluate against the tag → release. */
export async function experimentWorkflow(input: ExperimentInput): Promise<ExperimentResult> {
  const { request, experimentId } = input;
  const snapshot: ExperimentSnapshot = {
    experimentId,
    tag: request.tag,
    status: 'submitted',
    request,
    submittedAt: input.submittedAt,
    timeline: [{ status: 'submitted', at: input.submittedAt }],
    validation: null,
    placement: null,
    gpu: null,
    worker: null,
    attempts: 0,
    training: null,
    metric: null,
    decision: null,
    reason: null,
    metricPolicy: { name: request.metric?.name ?? DEFAULT_METRIC.name, direction: request.metric?.direction ?? DEFAULT_METRIC.direction },
  };
  let lease: Lease | undefined;
  let revoked: { leaseId: string; reason: string } | undefined;
  let trainScope: CancellationScope | undefined;

  setHandler(experimentStateQuery, () => snapshot);
  setHandler(leaseGrantedSignal, (granted) => {
    if (!lease && snapshot.status === 'queued') lease = granted;
  });
  setHandler(leaseRevokedSignal, (revocation) => {
    if (lease?.leaseId !== revocation.leaseId) return;
    revoked = revocation;
    trainScope?.cancel();
  });

  /**
   * What the catalog has not been told yet. It travels with the next state change, so the record
   * advances with the run at one activity per state rather than one per fact.
   */
  let pending: Omit<RecordUpdate, 'experimentId'> & { events: NonNullable<RecordUpdate['events']> } = { events: [] };
  /** Moves to a state in the live snapshot and search attributes; the catalog hears of it with the next advance. */
  const mark = (status: ExperimentStatus, note?: string) => {
    const at = new Date().toISOString();
    snapshot.status = status;
    snapshot.timeline.push({ status, at, ...(note ? { note } : {}) });
    upsertSearchAttributes([{ key: SA.status, value: status }]);
    pending.events.push({ status, at, ...(note ? { note } : {}) });
  };
  /** Moves to a state and writes it, with everything pending, to the catalog. */
  const advance = async (status: ExperimentStatus, note?: string, record: Omit<RecordUpdate, 'experimentId' | 'events'> = {}) => {
    mark(status, note);
    const update = { ...pending, ...record, experimentId, status };
    pending = { events: [] };
    await control.recordExperiment(update);
  };
  const pool = getExternalWorkflowHandle(POOL_WORKFLOW_ID);
  const releaseLease = async () => {
    await pool.signal(releaseLeaseSignal, { experimentId }).catch(() => undefined);
    lease = undefined;
    revoked = undefined;
  };

  const validate = async () => {
    pending.events.push({ status: 'submitted', at: input.submittedAt });
    await advance('validating', undefined, { request, submittedAt: input.submittedAt, ...(input.origin ? { origin: input.origin } : {}) });
    const tagPolicy = await control.resolveTagPolicy({ tag: request.tag, metric: request.metric });
    if ('refusal' in tagPolicy) throw new RunEnded('validation_failed', tagPolicy.refusal);
    snapshot.metricPolicy = tagPolicy.metric;
    pending.metric = tagPolicy.metric;
    const placement = await control.checkPlacement(request.requirements);
    if (placement.refusal !== null || placement.hostQueue === null) throw new RunEnded('validation_failed', placement.refusal ?? 'no host to validate on');
    const { patchText, ...report } = await hostActivities(placement.hostQueue).validateRequest(experimentId, request);
    snapshot.validation = report;
    if (!report.ok) throw new RunEnded('validation_failed', report.reason ?? 'validation failed');
    pending.validation = {
      resolvedConfig: report.resolvedConfig,
      interpreter: report.interpreter,
      patch: report.patch && patchText ? { text: patchText, sha256: report.patch.sha256, bytes: report.patch.bytes, files: report.patch.files } : null,
    };
  };

  const acquire = async (note?: string): Promise<Lease> => {
    await advance('queued', note);
    await pool.signal(requestLeaseSignal, { experimentId, requirements: request.requirements, priority: input.priority, datasets: request.datasets });
    await condition(() => lease !== undefined);
    const granted = lease!;
    snapshot.placement = granted.placement;
    snapshot.gpu = granted.slot.slotId;
    snapshot.worker = granted.slot.host;
    upsertSearchAttributes([{ key: SA.worker, value: granted.slot.host }]);
    pending.placement = granted.placement;
    pending.environment = await hostActivities(granted.hostQueue).captureEnvironment(request);
    return granted;
  };

  /** One training attempt on the leased slot. Returns the outcome, or a lost-worker / infra verdict. */
  const trainOnce = async (granted: Lease): Promise<{ outcome?: TrainingOutcome; lost?: string; infra?: string }> => {
    await advance('running', `on ${granted.slot.slotId}`, { attempts: snapshot.attempts });
    const training = proxyActivities<TrainingActivities>({
      taskQueue: granted.slot.taskQueue,
      scheduleToStartTimeout: TRAIN_SCHEDULE_TO_START,
      // Setup and the kill limit are enforced by the worker; this only bounds a worker that stopped enforcing them.
      startToCloseTimeout: `${Math.ceil(request.setupTimeoutSeconds + killLimitSeconds(request) + 300)}s`,
      heartbeatTimeout: TRAIN_HEARTBEAT_TIMEOUT,
      retry: { maximumAttempts: 1 },
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    });
    trainScope = new CancellationScope();
    const scope = trainScope;
    try {
      const running = scope.run(() => training.runTraining({ experimentId, request, slot: granted.slot, leaseId: granted.leaseId }));
      // A revoked lease means the host is gone: do not wait for a dead worker to confirm the cancel.
      // (Non-cancellable, so an operator's cancel still waits for the process group to be killed.)
      const revocation = CancellationScope.nonCancellable(() => condition(() => revoked !== undefined)).then(() => undefined);
      const outcome = await Promise.race([running, revocation]);
      if (outcome === undefined) {
        running.catch(() => undefined);
        return { lost: revoked!.reason };
      }
      return { outcome };
    } catch (error) {
      if (revoked) return { lost: revoked.reason };
      if (error instanceof ActivityFailure && error.cause instanceof TimeoutFailure) {
        return { lost: `the worker on ${granted.slot.host} stopped answering (${error.cause.timeoutType ?? 'timeout'} on ${granted.slot.slotId})` };
      }
      if (error instanceof ActivityFailure && !isCancellation(error)) {
        return { infra: error.cause?.message ?? error.message };
      }
      throw error;
    } finally {
      trainScope = undefined;
    }
  };

  const train = async (): Promise<{ outcome: TrainingOutcome; lease: Lease }> => {
    let replacements = 0;
    let infraFailures = 0;
    let note: string | undefined;
    for (;;) {
      const granted = await acquire(note);
      snapshot.attempts++;
      const attempt = await trainOnce(granted);
      if (attempt.outcome) return { outcome: attempt.outcome, lease: granted };
      await releaseLease();
      if (attempt.lost !== undefined) {
        if (replacements >= request.maxReplacements) throw new RunEnded('worker_lost', attempt.lost);
        replacements++;
        note = `re-placed after: ${attempt.lost}`;
        continue;
      }
      infraFailures++;
      if (infraFailures >= INFRA_ATTEMPTS) {
        throw new RunEnded('retry_exhausted', `infrastructure failed ${infraFailures} times; last: ${attempt.infra}`);
      }
      note = `retry ${infraFailures + 1} after: ${attempt.infra}`;
      await sleep(2 ** infraFailures * 1000);
    }
  };

  let ended: RunEnded;
  let acceleratorClass = 'unknown';
  try {
    await validate();
    const { outcome, lease: used } = await train();
    acceleratorClass = used.slot.acceleratorClass;
    snapshot.training = outcome;
    pending.training = outcome;
    const verdict = classifyTraining(outcome, snapshot.metricPolicy.name);
    snapshot.metric = verdict.metric;
    ended = new RunEnded(verdict.status, verdict.reason);
  } catch (error) {
    if (error instanceof RunEnded) ended = error;
    else if (isCancellation(error)) ended = new RunEnded('canceled', 'canceled by an operator before training finished');
    else if (error instanceof ActivityFailure) ended = new RunEnded('retry_exhausted', `a control step failed after its retries: ${error.cause?.message ?? error.message}`);
    else throw error;
  }

  // Everything below must happen even when the experiment was canceled.
  return CancellationScope.nonCancellable(async () => {
    await releaseLease();
    if (ended.status === 'completed') mark('evaluating');
    let decision: TagDecision;
    try {
      decision = await control.applyTagOutcome({
        tag: request.tag,
        metric: snapshot.metricPolicy,
        outcome: {
          experimentId,
          status: ended.status,
          metric: snapshot.metric,
          acceleratorClass,
          commit: request.commit,
          metrics: snapshot.training?.metrics ?? null,
          simplification: request.simplification,
        },
      });
    } catch (error) {
      throw ApplicationFailure.nonRetryable(`could not record the outcome on tag ${request.tag}: ${(error as Error).message}`);
    }
    snapshot.decision = decision;
    snapshot.reason = ended.reason;
    await advance(ended.status, undefined, { decision, reason: ended.reason });
    if (decision.decision) upsertSearchAttributes([{ key: SA.decision, value: decision.decision }]);
    if (snapshot.metric !== null) upsertSearchAttributes([{ key: SA.metric, value: snapshot.metric }]);
    return {
      experiment_id: experimentId,
      tag: request.tag,
      status: ended.status,
      decision: decision.decision,
      action: decision.action,
      metric_name: snapshot.metricPolicy.name,
      metric: snapshot.metric,
      best: decision.best,
      delta: decision.delta,
      near_miss: decision.nearMiss,
      consecutive_crashes: decision.consecutiveCrashes,
      should_abort: decision.shouldAbort,
      reason: ended.reason,
      gpu: snapshot.gpu,
      worker: snapshot.worker,
      rule: decision.decision ? decision.rule : null,
    };
  });
}

