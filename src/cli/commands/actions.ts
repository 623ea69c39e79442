import { WorkflowNotFoundError } from '@temporalio/client';
import { submitExperiment } from '../../client/experiments.js';
import { exitCodeFor } from '../../domain/experiment.js';
import { TAG_PATTERN, TAG_PATTERN_TEXT, type ExperimentRequest } from '../../domain/request.js';
import { connectClient } from '../../temporal/connection.js';
import { cancelExperimentUpdate, experimentStateQuery } from '../../workflows/definitions.js';
import { permissionDenied, signAs } from '../../client/sign.js';
import { PERMISSION_DENIED_EXIT_CODE } from '../../domain/authorization.js';
import { existingCatalog } from '../catalog-file.js';
import { CliError, printJson, safeText, wantsJson } from '../output.js';

/**
 * The request to repeat: from the workflow (it holds the exact request, secrets included),
 * or from the catalog once Temporal's retention has dropped the workflow.
 */
async function originalRequest(id: string): Promise<{ request: ExperimentRequest; redacted: string[] }> {
  const client = await connectClient();
  try {
    const snapshot = await client.workflow.getHandle(id).query(experimentStateQuery);
    return { request: snapshot.request, redacted: [] };
  } catch (error) {
    if (!(error instanceof WorkflowNotFoundError)) throw error;
  }
  const record = existingCatalog()?.get(id);
  if (!record) throw new CliError(`no experiment ${id} in Temporal or in the catalog`);
  const redacted = Object.entries(record.request.env)
    .filter(([, v]) => v === '[redacted]')
    .map(([k]) => k);
  return { request: record.request, redacted };
}

/** `retry` (same request, e.g. after an infrastructure failure) and `rerun` (reproduce a recorded run). */
export async function repeatCommand(
  kind: 'retry' | 'rerun',
  id: string,
  options: { json?: boolean; detach?: boolean },
): Promise<void> {
  const { request, redacted } = await originalRequest(id);
  if (redacted.length > 0)
    throw new CliError(
      `${id} was run with secret variables (${redacted.join(', ')}) that the record does not keep; resubmit with expctl run --env`,
    );
  const { idempotencyKey: _dropped, ...rest } = request;
  const client = await connectClient();
  const { experimentId, handle } = await submitExperiment(client, rest, { origin: { kind, of: id } });
  const change = {
    experiment_id: experimentId,
    [`${kind}_of`]: id,
    commit: request.commit,
    command: request.command,
    config: request.configPath ?? null,
    datasets: request.datasets,
    changed:
      kind === 'rerun'
        ? 'nothing but the experiment ID: same commit (and so the same patch and config), datasets, command and environment'
        : 'a new experiment ID; the request is the same',
  };
  if (wantsJson(options)) printJson(change);
  else
    console.log(
      safeText(`${experimentId}: ${kind} of ${id} at commit ${request.commit.slice(0, 12)} (${change.changed})`),
    );
  if (!options.detach) {
    const result = await handle.result();
    // The same exit codes as `run` and `wait` (BRIEF §4).
    process.exitCode = exitCodeFor(result.status);
    if (wantsJson(options)) printJson(result);
    else
      console.log(
        safeText(
          `${experimentId}: ${result.status}${result.decision ? ` → ${result.decision}` : ''}, ${result.metric_name} ${result.metric ?? '-'}: ${result.reason}`,
        ),
      );
  }
}

/** `tag stop T`: cancels every queued or running experiment of the tag. */
export async function tagStopCommand(tag: string, options: { json?: boolean }): Promise<void> {
  // The tag goes into a visibility query: only a well-formed tag name may.
  if (!TAG_PATTERN.test(tag)) throw new CliError(`tag ${JSON.stringify(safeText(tag))} must be ${TAG_PATTERN_TEXT}`);
  const client = await connectClient();
  const canceled: string[] = [];
  for await (const execution of client.workflow.list({
    query: `WorkflowType = 'experimentWorkflow' AND ExpctlTag = '${tag}' AND ExecutionStatus = 'Running'`,
  })) {
    const id = execution.workflowId;
    try {
      await client.workflow
        .getHandle(id)
        .executeUpdate(cancelExperimentUpdate, { args: [{ authorization: signAs('cancel', id) }] });
    } catch (error) {
      const denied = permissionDenied(error);
      if (denied) throw new CliError(denied, PERMISSION_DENIED_EXIT_CODE);
      // It ended between the listing and the cancel: nothing to cancel.
      if (error instanceof WorkflowNotFoundError) continue;
      throw error;
    }
    canceled.push(id);
  }
  if (wantsJson(options)) return printJson({ tag, canceled });
  console.log(
    canceled.length
      ? `canceled ${canceled.length} experiment(s) of ${safeText(tag)}:\n  ${canceled.map((id) => safeText(id)).join('\n  ')}`
      : `no queued or running experiment in tag ${safeText(tag)}`,
  );
}
