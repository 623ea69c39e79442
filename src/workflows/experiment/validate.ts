import { sleep } from '@temporalio/workflow';
import { DATA_POLL_SECONDS, isVersionedRef, pinnedRef } from '../../domain/dataset-refs.js';
import type { ValidationReport } from '../experiment-state.js';
import { control, hostActivities, localControl, patchKeeper } from './activities.js';
import { unsealedSecretNames, unsealedSecretsRefusal } from '../../domain/redact.js';
import { advance, mark, nextRecord, publish, RunEnded, type ExperimentRun } from './state.js';

/**
 * Checks the request against the tag's policy, the fleet and a capable host, which resolves its
 * config and keeps its patch (one local step, then the host's activity). Ends the run `validation_failed` (or `data_unavailable`) on a refusal.
 */
export async function validate(run: ExperimentRun): Promise<void> {
  const { input, request } = run;
  run.pending.events.push({ status: 'submitted', at: input.submittedAt, seq: 0 });
  mark(run, 'validating');
  // The record, the tag's policy and the pool's answer do not depend on each other: one step asks all three.
  const { tagPolicy, placement } = await localControl.beginRun({
    record: nextRecord(run, 'validating', {
      request,
      submittedAt: input.submittedAt,
      ...(input.origin ? { origin: input.origin } : {}),
    }),
    tagPolicy: {
      tag: request.tag,
      ...(request.metric ? { metric: request.metric } : {}),
      envNames: [...Object.keys(request.env), ...Object.keys(request.secrets ?? {})],
    },
    requirements: request.requirements,
  });
  publish(run);
  if ('refusal' in tagPolicy) throw new RunEnded('validation_failed', tagPolicy.refusal);
  const unsealed = unsealedSecretNames(request);
  if (unsealed.length > 0) throw new RunEnded('validation_failed', unsealedSecretsRefusal(unsealed));
  run.snapshot.metricPolicy = tagPolicy.metric;
  run.pending.metric = tagPolicy.metric;
  if (placement.refusal !== null || placement.hostQueue === null)
    throw new RunEnded('validation_failed', placement.refusal ?? 'no host to validate on');
  if (request.datasets.some(isVersionedRef)) await pinDatasets(run);
  const report = await validateOnHost(run, placement.hostQueue);
  await keepPatch(run, placement.hostQueue, report);
}

async function validateOnHost(run: ExperimentRun, hostQueue: string): Promise<ValidationReport> {
  const validated = await hostActivities(hostQueue).validateRequest(run.experimentId, run.request);
  const report = { ...validated, reason: validated.reason === null ? null : run.scrub(validated.reason) };
  run.snapshot.validation = report;
  if (!report.ok) throw new RunEnded('validation_failed', report.reason ?? 'validation failed');
  return report;
}

/** The patch's text goes from the validating host to the catalog past this history: only its reference is here. */
async function keepPatch(run: ExperimentRun, hostQueue: string, report: ValidationReport): Promise<void> {
  const patch = report.patch;
  if (patch) {
    const keep = { experimentId: run.experimentId, hostQueue, sha256: patch.sha256, bytes: patch.bytes };
    // One in the fleet store is kept by the step that queues the run; one only on its host is read from there now.
    if (patch.uri) run.patchToKeep = { ...keep, uri: patch.uri };
    else await patchKeeper.storePatch(keep);
  }
  run.pending.validation = {
    resolvedConfig: report.resolvedConfig,
    interpreter: report.interpreter,
    patch: patch
      ? { sha256: patch.sha256, bytes: patch.bytes, files: patch.files, ...(patch.uri ? { uri: patch.uri } : {}) }
      : null,
  };
}

/**
 * Resolves NAME@latest / NAME@V to versions whose gates passed, once: the run keeps them for
 * good (the record, training, reruns). With --wait-for-data it waits, durably, for a version.
 */
async function pinDatasets(run: ExperimentRun): Promise<void> {
  const { request, snapshot } = run;
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
      run.pending.datasetVersions = resolution.pinned;
      if (snapshot.status === 'waiting_for_data')
        await advance(run, 'validating', `data arrived: ${resolution.pinned.map(pinnedRef).join(', ')}`);
      return;
    }
    const missing = resolution.unavailable.join('; ');
    if (waitSeconds === undefined)
      throw new RunEnded('data_unavailable', `${missing} (submit with --wait-for-data to wait for it)`);
    const left = deadline - Date.now();
    if (left <= 0)
      throw new RunEnded('data_unavailable', `${missing}, after waiting ${waitSeconds} s (--wait-for-data)`);
    if (snapshot.status !== 'waiting_for_data') await advance(run, 'waiting_for_data', missing);
    // Often at first, when data is most likely on its way; then once a minute, to keep the history short.
    const pollMs = (polls < 40 ? DATA_POLL_SECONDS : 4 * DATA_POLL_SECONDS) * 1000;
    await sleep(Math.min(left, pollMs));
  }
}
