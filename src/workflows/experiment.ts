import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  getExternalWorkflowHandle,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  TimeoutFailure,
  upsertSearchAttributes,
  ActivityCancellationType,
  workflowInfo,
} from '@temporalio/workflow';
import type { Identity } from '../domain/authorization.js';
import { DATA_POLL_SECONDS, isVersionedRef, pinnedRef } from '../domain/dataset-refs.js';
import type { RecordUpdate } from '../catalog/record.js';
import { DEFAULT_METRIC, type RunOutcome, type TagDecision } from '../domain/decision.js';
import {
  type ExperimentResult,
  type ExperimentStatus,
  type TerminalStatus,
  type TrainingOutcome,
} from '../domain/experiment.js';
import {
  budgetOverrunSeconds,
  hostAnswerSeconds,
  killLimitSeconds,
  TRAIN_HEARTBEAT_TIMEOUT_SECONDS,
} from '../domain/limits.js';
import { classifyTraining } from '../domain/classify.js';
import {
  publicRequest,
  runSecretValues,
  scrubText,
  unsealedSecretNames,
  unsealedSecretsRefusal,
} from '../domain/redact.js';
import { POOL_WORKFLOW_ID, REFUSED_ON_HOST, RUN_NOT_ON_HOST } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import type { createControlActivities } from '../activities/control.js';
import type { createHostActivities } from '../activities/host.js';
import type { createRunStatusActivities, HostRunStatus } from '../activities/run-status.js';
import type { createTrainingActivities, TrainingHeartbeat } from '../activities/training.js';
import {
  batchDecisionSignal,
  batchMemberEndedSignal,
  cancelExperimentUpdate,
  experimentStateQuery,
  hostLostSignal,
  leaseGrantedSignal,
  leaseRevokedSignal,
  releaseLeaseSignal,
  requestLeaseSignal,
  type Lease,
} from './definitions.js';
import type { ExperimentInput, ExperimentSnapshot } from './experiment-state.js';
import type { ExperimentRequest } from '../domain/request.js';
import { localAuthorizer, requirePermission } from './authorize.js';
import { PERMISSION_DENIED } from '../domain/authorization.js';
import { evaluationDecision, isPromotionId } from '../domain/promotion.js';
import { CONTROL_ACTIVITY, CONTROL_STEP } from './control-retry.js';

type ControlActivities = ReturnType<typeof createControlActivities>;
type HostActivities = ReturnType<typeof createHostActivities> & ReturnType<typeof createRunStatusActivities>;
type TrainingActivities = ReturnType<typeof createTrainingActivities>;

/** Infrastructure failures of the train step (not the training itself) are retried this often. */
const INFRA_ATTEMPTS = 3;
/**
 * Training heartbeats every few seconds; silence this long means the worker may be gone. A false
 * alarm is harmless: the host is asked, and the run re-attached if it lives.
 */
const TRAIN_HEARTBEAT_TIMEOUT = `${TRAIN_HEARTBEAT_TIMEOUT_SECONDS}s`;
/** A slot queue nobody polls (worker died between lease and start) is detected this fast. */
const TRAIN_SCHEDULE_TO_START = '60s';
/** How long a host gets to answer for a slot it was just granted before it is called lost. */
const RECONCILE_WAIT = '15s';
/** How often a queued run asks the pool again for its lease (a re-created pool lost its queue). */
const LEASE_REQUEST_RENEWAL = '30s';
/** How long a batch child waits for its batch's decision before it is decided alone. */
const BATCH_DECISION_WAIT = '7 days';
/** How often one attempt re-attaches to a run its host still holds (each after a silence). */
const MAX_REATTACHES = 20;

/** `refused`: the request failed its checks again on the leased host (REFUSED_ON_HOST). */
type AttemptResult = { outcome?: TrainingOutcome; lost?: string; infra?: string; refused?: string };

const control = proxyActivities<ControlActivities>(CONTROL_ACTIVITY);

/** Keeps a patch in the catalog, read from its host page by page: longer than one catalog write. */
const patchKeeper = proxyActivities<ControlActivities>({ ...CONTROL_ACTIVITY, startToCloseTimeout: '5m' });

/**
 * The control steps that only read or write the catalog, run by the control worker that runs this
 * workflow: no trip through the server, so a submission's chain of steps is short. Steps that ask
 * other workflows (the pool, the tag) stay ordinary activities: a local one would hold this
 * workflow's task while waiting on another workflow's task on the same worker.
 */
const localControl = proxyLocalActivities<ControlActivities>(CONTROL_STEP);

function hostActivities(hostQueue: string, scheduleToStartTimeout?: string) {
  return proxyActivities<HostActivities>({
    taskQueue: hostQueue,
    ...(scheduleToStartTimeout ? { scheduleToStartTimeout } : {}),
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
  // The request carries secret values to the worker; what is shown (the state query) is its public
  // form, and every text this workflow writes (notes, reasons) is scrubbed of the run's secrets.
  const secretValues = runSecretValues(request);
  const scrub = (text: string) => scrubText(text, secretValues);
  const snapshot: ExperimentSnapshot = {
    experimentId,
    tag: request.tag,
    status: 'submitted',
    request: publicRequest(request),
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
    metricPolicy: {
      name: request.metric?.name ?? DEFAULT_METRIC.name,
      direction: request.metric?.direction ?? DEFAULT_METRIC.direction,
    },
  };
  let lease: Lease | undefined;
  let revoked: { leaseId: string; reason: string } | undefined;
  let attemptScope: CancellationScope | undefined;
  /** Everything up to the decision; a signed cancel cancels it (Temporal's own cancel reaches it too). */
  const body = new CancellationScope();
  let canceledBy: Identity | undefined;

  setHandler(experimentStateQuery, () => snapshot);
  setHandler(leaseGrantedSignal, (granted) => {
    if (!lease && snapshot.status === 'queued') lease = granted;
  });
  setHandler(cancelExperimentUpdate, async ({ authorization }) => {
    const identity = await requirePermission({
      authorization,
      action: 'cancel',
      target: experimentId,
      acceptedAt: new Date().toISOString(),
      owner: snapshot.submittedBy ?? null,
    });
    canceledBy ??= identity;
    body.cancel();
    return { canceledBy: identity.name };
  });
  let batchDecision: TagDecision | undefined;
  if (input.batch) setHandler(batchDecisionSignal, (decision) => void (batchDecision ??= decision));
  // A batch's deadline: a run still going then is canceled, and says why.
  let pastDeadline: string | undefined;
  let bodyDone = false;
  if (input.batch?.deadline) {
    const deadline = input.batch.deadline;
    void sleep(Math.max(0, Date.parse(deadline) - Date.now())).then(
      () => {
        if (bodyDone) return;
        pastDeadline = `the batch's deadline (${deadline}) passed before it finished`;
        body.cancel();
      },
      () => undefined,
    );
  }
  setHandler(leaseRevokedSignal, (revocation) => {
    if (lease?.leaseId !== revocation.leaseId) return;
    revoked = revocation;
    attemptScope?.cancel();
  });

  /**
   * What the catalog has not been told yet. It travels with the next state change, so the record
   * advances with the run at one activity per state rather than one per fact.
   */
  let pending: Omit<RecordUpdate, 'experimentId'> & { events: NonNullable<RecordUpdate['events']> } = { events: [] };
  /** This run's count of record updates: the catalog ignores one older than it has applied. */
  let revision = 0;
  /** Moves to a state in the live snapshot and search attributes; the catalog hears of it with the next advance. */
  const mark = (status: ExperimentStatus, unscrubbed?: string) => {
    const at = new Date().toISOString();
    const note = unscrubbed === undefined ? undefined : scrub(unscrubbed);
    snapshot.status = status;
    snapshot.timeline.push({ status, at, ...(note ? { note } : {}) });
    upsertSearchAttributes([{ key: SA.status, value: status }]);
    pending.events.push({ status, at, ...(note ? { note } : {}), seq: snapshot.timeline.length - 1 });
  };
  /** Moves to a state and writes it, with everything pending, to the catalog. */
  const advance = async (
    status: ExperimentStatus,
    note?: string,
    record: Omit<RecordUpdate, 'experimentId' | 'events'> = {},
  ) => {
    mark(status, note);
    const update = { ...pending, ...record, experimentId, status, revision: ++revision };
    pending = { events: [] };
    await localControl.recordExperiment(update);
  };
  const pool = getExternalWorkflowHandle(POOL_WORKFLOW_ID);
  const releaseLease = async () => {
    await pool.signal(releaseLeaseSignal, { experimentId }).catch(() => undefined);
    lease = undefined;
    revoked = undefined;
  };

  const validate = async () => {
    pending.events.push({ status: 'submitted', at: input.submittedAt, seq: 0 });
    const recordValidating = () =>
      advance('validating', undefined, {
        request,
        submittedAt: input.submittedAt,
        ...(input.origin ? { origin: input.origin } : {}),
      });
    const askTagPolicy = () =>
      control.resolveTagPolicy({
        tag: request.tag,
        metric: request.metric,
        envNames: [...Object.keys(request.env), ...Object.keys(request.secrets ?? {})],
      });
    const askPlacement = () => control.checkPlacement(request.requirements);
    // The record, the tag's policy and the pool's answer do not depend on each other: asked at once.
    const [, tagPolicy, placement] = await Promise.all([recordValidating(), askTagPolicy(), askPlacement()]);
    if ('refusal' in tagPolicy) throw new RunEnded('validation_failed', tagPolicy.refusal);
    const unsealed = unsealedSecretNames(request);
    if (unsealed.length > 0) throw new RunEnded('validation_failed', unsealedSecretsRefusal(unsealed));
    snapshot.metricPolicy = tagPolicy.metric;
    pending.metric = tagPolicy.metric;
    if (placement.refusal !== null || placement.hostQueue === null)
      throw new RunEnded('validation_failed', placement.refusal ?? 'no host to validate on');
    if (request.datasets.some(isVersionedRef)) await pinDatasets();
    const validated = await hostActivities(placement.hostQueue).validateRequest(experimentId, request);
    const report = { ...validated, reason: validated.reason === null ? null : scrub(validated.reason) };
    snapshot.validation = report;
    if (!report.ok) throw new RunEnded('validation_failed', report.reason ?? 'validation failed');
    const patch = report.patch;
    // The text goes from the validating host to the catalog past this history: only its reference is here.
    if (patch)
      await patchKeeper.storePatch({
        experimentId,
        hostQueue: placement.hostQueue,
        sha256: patch.sha256,
        bytes: patch.bytes,
      });
    pending.validation = {
      resolvedConfig: report.resolvedConfig,
      interpreter: report.interpreter,
      patch: patch ? { sha256: patch.sha256, bytes: patch.bytes, files: patch.files } : null,
    };
  };

  /**
   * Resolves NAME@latest / NAME@V to versions whose gates passed, once: the run keeps them for
   * good (the record, training, reruns). With --wait-for-data it waits, durably, for a version.
   */
  const pinDatasets = async () => {
    const waitSeconds = request.waitForDataSeconds;
    const deadline = Date.now() + (waitSeconds ?? 0) * 1000;
    for (let polls = 0; ; polls++) {
      const resolution = await control.resolveDatasets(request.datasets);
      if (resolution.refusal !== null) throw new RunEnded('validation_failed', resolution.refusal);
      // A dataset nobody ever added is a typo, not data on its way: refused unless the run waits for data.
      const unknown = resolution.unknown ?? [];
      if (waitSeconds === undefined && unknown.length > 0) throw new RunEnded('validation_failed', unknown.join('; '));
      if (resolution.unavailable.length === 0) {
        snapshot.datasetVersions = resolution.pinned;
        pending.datasetVersions = resolution.pinned;
        if (snapshot.status === 'waiting_for_data')
          await advance('validating', `data arrived: ${resolution.pinned.map(pinnedRef).join(', ')}`);
        return;
      }
      const missing = resolution.unavailable.join('; ');
      if (waitSeconds === undefined)
        throw new RunEnded('data_unavailable', `${missing} (submit with --wait-for-data to wait for it)`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new RunEnded('data_unavailable', `${missing}, after waiting ${waitSeconds} s (--wait-for-data)`);
      if (snapshot.status !== 'waiting_for_data') await advance('waiting_for_data', missing);
      // Often at first, when data is most likely on its way; then once a minute, to keep the history short.
      const pollMs = (polls < 40 ? DATA_POLL_SECONDS : 4 * DATA_POLL_SECONDS) * 1000;
      await sleep(Math.min(left, pollMs));
    }
  };

  /**
   * A re-placed run waits only while a live host could take it: its only capable host may be the
   * one that died. No registered slot can ever take it: it ends at once; none online: it waits the
   * pool's heartbeat limit for one to register (a restarting worker does), then ends worker_lost.
   */
  const awaitLiveHost = async (lost: string, requirements: ExperimentRequest['requirements']) => {
    for (let noneLive = false; ; ) {
      const check = await control.checkReplacement(requirements);
      if (check.refusal !== null)
        throw new RunEnded('worker_lost', `${lost}; no host in the fleet can take it again: ${check.refusal}`);
      if (check.liveCapable === 0 && noneLive)
        throw new RunEnded(
          'worker_lost',
          `${lost}; re-placed, but no live host could take it within ${Math.round(check.waitMs / 1000)} s (the pool's heartbeat limit)`,
        );
      noneLive = check.liveCapable === 0;
      if (await condition(() => lease !== undefined, check.waitMs)) return;
    }
  };

  /** Waits in the pool's queue for a lease (the state is `queued`, also when a run is re-placed). */
  const acquire = async (note?: string, requirements = request.requirements, lost?: string): Promise<Lease> => {
    await advance('queued', note);
    const requestLease = () =>
      pool.signal(requestLeaseSignal, {
        experimentId,
        requirements,
        priority: input.priority,
        tag: request.tag,
        // Locality: a pinned version is laid out on a host as NAME@V, the name its registration lists.
        datasets: request.datasets.map((ref) => {
          const pinned = snapshot.datasetVersions?.find((p) => p.ref === ref);
          return pinned ? pinnedRef(pinned) : ref;
        }),
      });
    await requestLease();
    if (lost !== undefined) await awaitLiveHost(lost, requirements);
    // Asked again now and then (the pool ignores a request it holds): a pool started again after it
    // was gone (terminated by hand) knows nothing of the runs that were waiting in its queue.
    while (!(await condition(() => lease !== undefined, LEASE_REQUEST_RENEWAL)))
      await requestLease().catch(() => undefined);
    const granted = lease!;
    snapshot.placement = granted.placement;
    snapshot.gpu = granted.slot.slotId;
    snapshot.worker = granted.slot.host;
    upsertSearchAttributes([{ key: SA.worker, value: granted.slot.host }]);
    pending.placement = granted.placement;
    return granted;
  };

  /**
   * Asked before a run is called lost: a worker restart or a server outage is not a lost run, and
   * the host keeps a finished run's result on disk. Null when the host does not answer in time.
   */
  const askHost = async (granted: Lease, wait: string): Promise<HostRunStatus | null> => {
    try {
      // Bounded end to end: across a cut link the server can hand the task to a poll whose host
      // never hears of it, and only a whole-call limit ends that wait (a queue limit does not).
      const host = proxyActivities<HostActivities>({
        taskQueue: granted.hostQueue,
        scheduleToCloseTimeout: wait,
        retry: { initialInterval: '1s', maximumAttempts: 3 },
      });
      return await host.runStatus(experimentId);
    } catch (error) {
      if (error instanceof ActivityFailure && !isCancellation(error)) return null;
      throw error;
    }
  };
  /** The host is unreachable: the pool takes it offline in the same step, so nothing is placed there again. */
  const hostLost = async (granted: Lease, reason: string): Promise<{ lost: string }> => {
    await pool.signal(hostLostSignal, { host: granted.slot.host, reason }).catch(() => undefined);
    return { lost: reason };
  };

  /** Runs training on the leased slot; when the worker stops answering, asks its host before giving up. */
  const supervise = async (granted: Lease): Promise<AttemptResult> => {
    const training = proxyActivities<TrainingActivities>({
      taskQueue: granted.slot.taskQueue,
      scheduleToStartTimeout: TRAIN_SCHEDULE_TO_START,
      // Setup and the kill limit are enforced by the worker; this only bounds a worker that stopped enforcing them.
      startToCloseTimeout: `${Math.ceil(request.setupTimeoutSeconds + killLimitSeconds(request) + 300)}s`,
      heartbeatTimeout: TRAIN_HEARTBEAT_TIMEOUT,
      retry: { maximumAttempts: 1 },
      cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    });
    const input = {
      experimentId,
      request,
      slot: granted.slot,
      leaseId: granted.leaseId,
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
        const status = await askHost(granted, wait);
        if (status === null) return hostLost(granted, `${silence}, and the host did not answer within ${wait}`);
        if (status.state === 'finished') return { outcome: status.outcome };
        if (status.state === 'unknown') return { lost: `${silence}; the host answered but ${status.why}` };
        // The host holds the run (its worker restarted, or the server was away): follow it again.
        if (reattaches >= MAX_REATTACHES)
          return { lost: `${silence}; re-attached ${MAX_REATTACHES} times without the run ending` };
        follow = () => training.awaitTraining({ experimentId, slot: granted.slot, leaseId: granted.leaseId });
      }
    }
  };

  /**
   * One attempt on a lease: the environment record, then training. A revoked lease ends the attempt
   * in any state, without waiting for a dead worker to confirm (an operator's cancel still waits for
   * the process group to be killed: the revocation watch is not cancellable).
   */
  const attemptOn = async (granted: Lease): Promise<AttemptResult> => {
    const scope = new CancellationScope();
    attemptScope = scope;
    const work = scope.run(async (): Promise<AttemptResult> => {
      try {
        pending.environment = await hostActivities(granted.hostQueue, RECONCILE_WAIT).captureEnvironment(request);
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
      await advance('running', `on ${granted.slot.slotId}`, { attempts: snapshot.attempts });
      return supervise(granted);
    });
    const revocation = CancellationScope.nonCancellable(() => condition(() => revoked !== undefined)).then(
      () => undefined,
    );
    try {
      const result = await Promise.race([work, revocation]);
      if (result !== undefined) return result;
      work.catch(() => undefined);
      return { lost: revoked!.reason };
    } catch (error) {
      if (revoked) return { lost: revoked.reason };
      throw error;
    } finally {
      attemptScope = undefined;
    }
  };

  const train = async (): Promise<{ outcome: TrainingOutcome; lease: Lease }> => {
    let replacements = 0;
    let infraFailures = 0;
    let note: string | undefined;
    let requirements = request.requirements;
    let lost: string | undefined;
    for (;;) {
      const granted = await acquire(note, requirements, lost);
      lost = undefined;
      snapshot.attempts++;
      const attempt = await attemptOn(granted);
      if (attempt.outcome) return { outcome: attempt.outcome, lease: granted };
      await releaseLease();
      if (attempt.refused !== undefined) throw new RunEnded('validation_failed', attempt.refused);
      if (attempt.lost !== undefined) {
        if (replacements >= request.maxReplacements) throw new RunEnded('worker_lost', attempt.lost);
        replacements++;
        // Placed again on the same accelerator class, so its metric stays comparable with the first attempt's.
        requirements = { ...request.requirements, acceleratorClass: granted.slot.acceleratorClass };
        note = `re-placed (attempt ${snapshot.attempts + 1}) on a healthy ${granted.slot.acceleratorClass} slot after: ${attempt.lost}`;
        lost = attempt.lost;
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

  // A promotion's holdout evaluation is authorized by its parent, the promotion workflow (which
  // verified the promoter's signature); only a workflow can start a child, so no client can forge it.
  const evaluation = input.purpose === 'evaluation';
  if (evaluation) {
    const parent = workflowInfo().parent?.workflowId;
    if (parent === undefined || !isPromotionId(parent))
      throw ApplicationFailure.nonRetryable(
        `permission_denied: an evaluation run is started only by a promotion workflow, not ${parent ? `by ${parent}` : 'by a client'}`,
        PERMISSION_DENIED,
      );
    snapshot.submittedBy = input.submittedBy ?? parent;
    pending.submittedBy = snapshot.submittedBy;
  } else {
    // Refused before anything is recorded or placed: the workflow fails with the named error.
    const identity = await requirePermission(
      {
        authorization: input.authorization,
        action: 'submit',
        target: experimentId,
        content: {
          experimentId,
          request,
          priority: input.priority,
          ...(input.origin ? { origin: input.origin } : {}),
          ...(input.batch ? { batch: input.batch } : {}),
        },
        acceptedAt: workflowInfo().startTime.toISOString(),
      },
      localAuthorizer,
    );
    snapshot.submittedBy = identity.name;
    pending.submittedBy = identity.name;
  }

  /**
   * A batch child's decision: it tells its batch it has ended and waits for the batch to decide it
   * with its siblings. A batch that is gone, or never answers, leaves the run decided alone.
   */
  const decidedByBatch = async (
    batchId: string,
    outcome: RunOutcome,
    alone: () => Promise<TagDecision>,
  ): Promise<TagDecision> => {
    mark('evaluating', `waiting for batch ${batchId} to decide`);
    try {
      await getExternalWorkflowHandle(batchId).signal(batchMemberEndedSignal, {
        outcome,
        metric: snapshot.metricPolicy,
      });
    } catch {
      return alone();
    }
    if (await condition(() => batchDecision !== undefined, BATCH_DECISION_WAIT)) return batchDecision!;
    return alone();
  };

  let ended: RunEnded;
  let acceleratorClass = 'unknown';
  try {
    await body.run(validate);
    const { outcome, lease: used } = await body.run(train);
    acceleratorClass = used.slot.acceleratorClass;
    snapshot.training = outcome;
    pending.training = outcome;
    const verdict = classifyTraining(outcome, snapshot.metricPolicy.name);
    snapshot.metric = verdict.metric;
    // The budget is the script's to enforce; a run that overran it is still judged, and says so.
    const over = budgetOverrunSeconds(request.timeBudgetSeconds, outcome.timings?.trainingSeconds ?? null);
    const budgetNote =
      verdict.status === 'completed' && over !== null
        ? `; its training_seconds exceeded the ${request.timeBudgetSeconds} s budget by ${over} s`
        : '';
    ended = new RunEnded(verdict.status, verdict.reason + budgetNote);
  } catch (error) {
    if (error instanceof RunEnded) ended = error;
    else if (isCancellation(error))
      ended = new RunEnded(
        'canceled',
        pastDeadline ??
          `canceled by ${canceledBy ? `${canceledBy.name} (${canceledBy.role})` : 'an operator'} before training finished`,
      );
    else if (error instanceof ActivityFailure)
      ended = new RunEnded(
        'retry_exhausted',
        `a control step failed after its retries: ${error.cause?.message ?? error.message}`,
      );
    else throw error;
  }

  bodyDone = true;
  ended = new RunEnded(ended.status, scrub(ended.reason));
  // Everything below must happen even when the experiment was canceled.
  return CancellationScope.nonCancellable(async () => {
    await releaseLease();
    if (ended.status === 'completed' && !input.batch) mark('evaluating');
    let decision: TagDecision;
    try {
      // An evaluation is judged by its promotion, never by its tag: the tag's state is not touched.
      const outcome: RunOutcome = {
        experimentId,
        status: ended.status,
        metric: snapshot.metric,
        acceleratorClass,
        commit: request.commit,
        metrics: snapshot.training?.metrics ?? null,
        simplification: request.simplification,
      };
      const alone = () => control.applyTagOutcome({ tag: request.tag, metric: snapshot.metricPolicy, outcome });
      decision = evaluation
        ? evaluationDecision(experimentId, ended.status, snapshot.metric)
        : input.batch
          ? await decidedByBatch(input.batch.batchId, outcome, alone)
          : await alone();
    } catch (error) {
      throw ApplicationFailure.nonRetryable(
        `could not record the outcome on tag ${request.tag}: ${(error as Error).message}`,
      );
    }
    snapshot.decision = decision;
    snapshot.reason = ended.reason;
    await advance(ended.status, undefined, evaluation ? { reason: ended.reason } : { decision, reason: ended.reason });
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
