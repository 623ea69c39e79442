import { upsertSearchAttributes } from '@temporalio/workflow';
import type { TagDecision } from '../../domain/decision.js';
import type { ExperimentResult } from '../../domain/experiment.js';
import { telemetryWarnings } from '../../domain/telemetry.js';
import { SA } from '../../shared/search-attributes.js';
import { advance, type ExperimentRun, type RunEnded } from './state.js';

/** Writes the end state, the decision and the reason to the catalog and returns the agent's result. */
export async function record(run: ExperimentRun, ended: RunEnded, decision: TagDecision): Promise<ExperimentResult> {
  const { snapshot, request, experimentId } = run;
  snapshot.decision = decision;
  snapshot.reason = ended.reason;
  await advance(
    run,
    ended.status,
    undefined,
    run.evaluation ? { reason: ended.reason } : { decision, reason: ended.reason },
  );
  if (decision.decision) upsertSearchAttributes([{ key: SA.decision, value: decision.decision }]);
  if (snapshot.metric !== null) upsertSearchAttributes([{ key: SA.metric, value: snapshot.metric }]);
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
