import { ApplicationFailure } from '@temporalio/workflow';
import type { RunOutcome, TagDecision } from '../../domain/decision.js';
import type { ExperimentResult } from '../../domain/experiment.js';
import { telemetryWarnings } from '../../domain/telemetry.js';
import { SA } from '../../shared/search-attributes.js';
import { localControl } from './activities.js';
import {
  advance,
  holdsLease,
  leaseRelease,
  nextRecord,
  publish,
  setAttribute,
  show,
  statusEvent,
  type ExperimentRun,
  type RunEnded,
} from './state.js';

/** Writes the end state, the decision and the reason to the catalog and returns the agent's result. */
export async function record(run: ExperimentRun, ended: RunEnded, decision: TagDecision): Promise<ExperimentResult> {
  const { snapshot } = run;
  snapshot.decision = decision;
  snapshot.reason = ended.reason;
  decisionAttributes(run, decision);
  await advance(
    run,
    ended.status,
    undefined,
    run.evaluation ? { reason: ended.reason } : { decision, reason: ended.reason },
  );
  return resultOf(run, ended, decision);
}

/**
 * A run its tag decides ends in one local step: the lease given back, the outcome decided on the
 * tag, the end recorded with the decision. The end shows in the snapshot once it is decided.
 */
export async function finishAlone(run: ExperimentRun, ended: RunEnded, outcome: RunOutcome): Promise<ExperimentResult> {
  const { snapshot, request, experimentId } = run;
  const end = statusEvent(run, ended.status);
  run.pending.events.push(end);
  let decision: TagDecision;
  try {
    decision = await localControl.finishRun({
      ...(holdsLease(run) ? { release: leaseRelease(run) } : {}),
      tagOutcome: { tag: request.tag, metric: snapshot.metricPolicy, outcome },
      record: nextRecord(run, ended.status, { reason: ended.reason }),
    });
  } catch (error) {
    throw ApplicationFailure.nonRetryable(
      `could not record the outcome on tag ${request.tag}: ${(error as Error).message}`,
    );
  }
  run.lease = undefined;
  run.revoked = undefined;
  snapshot.decision = decision;
  snapshot.reason = ended.reason;
  show(run, end);
  decisionAttributes(run, decision);
  publish(run);
  return resultOf(run, ended, decision);
}

/** The decision and the metric, for the search attributes the end publishes. */
function decisionAttributes(run: ExperimentRun, decision: TagDecision): void {
  if (decision.decision) setAttribute(run, { key: SA.decision, value: decision.decision });
  if (run.snapshot.metric !== null) setAttribute(run, { key: SA.metric, value: run.snapshot.metric });
}

/** The agent's result. */
function resultOf(run: ExperimentRun, ended: RunEnded, decision: TagDecision): ExperimentResult {
  const { snapshot, request, experimentId } = run;
  const warnings = telemetryWarnings(snapshot.training?.gpuTelemetry);
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
    ...(snapshot.gpus ? { gpus: snapshot.gpus } : {}),
    worker: snapshot.worker,
    rule: decision.decision ? decision.rule : null,
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}
