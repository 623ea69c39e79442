import crypto from 'node:crypto';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { hijackRefusal } from '../domain/environment.js';
import { fieldsHoldingSecrets, publicRequest } from '../domain/redact.js';
import {
  parseExperimentRequest,
  parsePriority,
  RequestValidationError,
  tagProblem,
  type ExperimentRequest,
  type ExperimentRequestInput,
} from '../domain/request.js';
import { cancelExperimentUpdate, experimentStateQuery, tagStateQuery } from '../workflows/definitions.js';
import type { ExperimentSnapshot } from '../workflows/experiment-state.js';
import { tagWorkflowId } from '../workflows/tag.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import { experimentWorkflow } from '../workflows/experiment.js';
import { loadCredential, signRequest, type Credential } from '../security/credentials.js';
import { loadSealingKey, sealSecrets, type SealingKey } from '../security/sealed-secrets.js';
import { signAs } from './sign.js';
import { contentDigest } from '../security/content-digest.js';
import { differingFields, fingerprintRequest, type RequestFingerprint } from './request-digest.js';

export type ExperimentHandle = WorkflowHandle<typeof experimentWorkflow>;

/**
 * A workflow ID of a tag's kind (`exp`, `batch`): with an idempotency key it is derived from the
 * key, so resubmitting returns the same workflow; otherwise a timestamp and a random suffix.
 */
export function keyedWorkflowId(prefix: string, tag: string, idempotencyKey?: string, now = new Date()): string {
  if (idempotencyKey)
    return `${prefix}-${tag}-k${crypto.createHash('sha256').update(`${tag}\0${idempotencyKey}`).digest('hex').slice(0, 16)}`;
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `${prefix}-${tag}-${stamp}-${crypto.randomBytes(3).toString('hex')}`;
}

/** Experiment ID = workflow ID, derived from the idempotency key when there is one. */
export function experimentIdFor(tag: string, idempotencyKey?: string, now = new Date()): string {
  return keyedWorkflowId('exp', tag, idempotencyKey, now);
}

export interface Submitted {
  experimentId: string;
  handle: ExperimentHandle;
}

/** An idempotency key reused with a different request: refused like any malformed request (exit 2). */
export class IdempotencyConflictError extends RequestValidationError {
  constructor(
    readonly existingExperimentId: string,
    readonly idempotencyKey: string,
    readonly fields: string[],
  ) {
    super([`--idempotency-key: already used for experiment ${existingExperimentId} with a different request`]);
    this.message =
      `idempotency key "${idempotencyKey}" was already used for experiment ${existingExperimentId} with a different request ` +
      `(fields that differ: ${fields.join(', ') || 'unknown'}); resubmit the same request to get that experiment, or use a new key`;
  }
}

/** Memo keys of the request fingerprint (see request-digest.ts). */
const MEMO_DIGEST = 'requestDigest';
const MEMO_FIELDS = 'requestFieldDigests';

/** Refuses when the experiment behind `handle` was started for another request than `mine`. */
async function checkSameRequest(handle: ExperimentHandle, key: string, mine: RequestFingerprint): Promise<void> {
  const { memo } = await handle.describe();
  const digest = memo?.[MEMO_DIGEST];
  // Started before requests carried a fingerprint: nothing to compare with.
  if (typeof digest !== 'string' || digest === mine.digest) return;
  const theirs = (memo?.[MEMO_FIELDS] ?? {}) as Record<string, string>;
  throw new IdempotencyConflictError(handle.workflowId, key, differingFields(theirs, mine.fields));
}

/**
 * Refuses early, before an experiment exists, a request that sets loader or interpreter hijack
 * variables its tag does not allow (the experiment's validation checks again, authoritatively).
 */
export async function checkHijackVariables(client: Client, request: ExperimentRequest): Promise<void> {
  const names = [...Object.keys(request.env), ...Object.keys(request.secrets)];
  if (hijackRefusal(request.tag, names) === null) return;
  let allowEnv: string[] = [];
  try {
    const state = await client.workflow.getHandle(tagWorkflowId(request.tag)).query(tagStateQuery);
    allowEnv = state.policy.allowEnv ?? [];
  } catch (error) {
    if (!(error instanceof WorkflowNotFoundError)) throw error;
  }
  const refusal = hijackRefusal(request.tag, names, allowEnv);
  if (refusal !== null) throw new RequestValidationError([refusal]);
}

export interface SubmitOptions {
  priority?: number;
  origin?: { kind: 'retry' | 'rerun'; of: string };
  /** `retry --resume`: the experiment whose latest checkpoint the new run restores before it starts. */
  resumeFrom?: string;
  /** Who submits; default: this process's credential (EXPCTL_CREDENTIAL_FILE or the state directory's). */
  credential?: Credential;
  /** The workers' public key `--secret` values are sealed for; default: EXPCTL_SEAL_PUBLIC_KEY_FILE or the state directory's. */
  sealingKey?: SealingKey;
}

/**
 * The request with each `--secret` value sealed for the GPU workers, bound to its experiment (see
 * src/security/sealed-secrets.ts): the payload keyring does not open it in history. A secret also
 * written into another field is refused, as that field travels as written.
 */
export async function sealRequestSecrets<R extends ExperimentRequest>(
  request: R,
  experimentId: string,
  sealingKey?: SealingKey,
): Promise<R> {
  if (Object.keys(request.secrets).length === 0) return request;
  const exposed = fieldsHoldingSecrets(request);
  if (exposed.length > 0)
    throw new RequestValidationError([
      `a value given with --secret is also written in ${exposed.join(', ')}, which Temporal's history keeps as written; pass it only with --secret`,
    ]);
  const key = sealingKey ?? (await loadSealingKey());
  return { ...request, secrets: sealSecrets(key, experimentId, request.secrets) };
}

/**
 * Validates the request (throws RequestValidationError) and starts its workflow. With an
 * idempotency key, the same request returns the existing experiment (running or finished);
 * a different request under that key throws IdempotencyConflictError.
 */
export async function submitExperiment(
  client: Client,
  input: ExperimentRequestInput,
  options: SubmitOptions = {},
): Promise<Submitted> {
  return submitRequest(client, parseExperimentRequest(input), options);
}

/**
 * Starts the workflow of a request already parsed at the caller's boundary (the CLI's `run`), as
 * it is: nothing is parsed again or changed on the way but its `--secret` values, sealed for the
 * workers; the workflow checks it again at its own boundary.
 */
export async function submitRequest(
  client: Client,
  parsed: ExperimentRequest,
  options: SubmitOptions = {},
): Promise<Submitted> {
  await checkHijackVariables(client, parsed);
  const credential = options.credential ?? loadCredential();
  const experimentId = experimentIdFor(parsed.tag, parsed.idempotencyKey);
  const request = await sealRequestSecrets(parsed, experimentId, options.sealingKey);
  const priority = parsePriority(options.priority);
  const fingerprint = fingerprintRequest(experimentId, request, priority);
  // The memo is shown by the Web UI as it is: only public text goes there.
  const shown = publicRequest(request);
  const submission = {
    experimentId,
    request,
    priority,
    ...(options.origin ? { origin: options.origin } : {}),
    ...(options.resumeFrom ? { resumeFrom: options.resumeFrom } : {}),
  };
  const authorization = signRequest(credential, {
    action: 'submit',
    target: experimentId,
    digest: contentDigest(submission),
  });
  let handle: ExperimentHandle;
  try {
    handle = await client.workflow.start(experimentWorkflow, {
      workflowId: experimentId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{ ...submission, submittedAt: new Date().toISOString(), authorization }],
      // Concurrent submissions with one key attach to the same run; a finished one is never rerun.
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      typedSearchAttributes: [
        { key: SA.tag, value: request.tag },
        { key: SA.category, value: request.category },
        { key: SA.status, value: 'submitted' },
      ],
      memo: {
        hypothesis: shown.hypothesis,
        commit: request.commit,
        description: shown.description,
        [MEMO_DIGEST]: fingerprint.digest,
        [MEMO_FIELDS]: fingerprint.fields,
      },
    });
  } catch (error) {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    handle = client.workflow.getHandle<typeof experimentWorkflow>(experimentId);
  }
  // USE_EXISTING (a run still going) and REJECT_DUPLICATE (a finished one) both land here with the
  // existing experiment; without a key the ID is fresh and the run is ours.
  if (request.idempotencyKey) await checkSameRequest(handle, request.idempotencyKey, fingerprint);
  return { experimentId, handle };
}

/** The handle of an experiment (its workflow), to wait for its result. */
export function experimentHandle(client: Client, experimentId: string): ExperimentHandle {
  return client.workflow.getHandle(experimentId);
}

/** The ID names a workflow of expctl's, but of another kind than an experiment (a batch, the pool, a tag). */
export class NotAnExperimentError extends Error {
  constructor(
    readonly id: string,
    /** Temporal's workflow type: batchWorkflow, poolWorkflow, tagWorkflow, ... */
    readonly workflowType: string,
  ) {
    super(`${id} is a ${workflowType}, not an experiment`);
  }
}

/** The type of the workflow with this ID, or undefined when Temporal has none. */
export async function workflowTypeOf(client: Client, id: string): Promise<string | undefined> {
  try {
    return (await client.workflow.getHandle(id).describe()).type;
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}

/**
 * An experiment's live state, or undefined when Temporal has no such workflow (any more). A
 * workflow of another kind under that ID throws NotAnExperimentError (its query is not answered).
 */
export async function experimentState(client: Client, experimentId: string): Promise<ExperimentSnapshot | undefined> {
  try {
    return await experimentHandle(client, experimentId).query(experimentStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    const type = await workflowTypeOf(client, experimentId).catch(() => undefined);
    if (type !== undefined && type !== 'experimentWorkflow') throw new NotAnExperimentError(experimentId, type);
    throw error;
  }
}

/** A signed cancel (the submitter's own run, or an operator's); answers who canceled. */
export async function cancelExperiment(client: Client, experimentId: string): Promise<{ canceledBy: string }> {
  return experimentHandle(client, experimentId).executeUpdate(cancelExperimentUpdate, {
    args: [{ authorization: signAs('cancel', experimentId) }],
  });
}

/** IDs of a tag's queued or running experiments, from Temporal's visibility. */
export async function* activeExperimentIds(client: Client, tag: string): AsyncGenerator<string> {
  // The tag goes into a visibility query: only a well-formed tag name may.
  const problem = tagProblem(tag);
  if (problem) throw new Error(problem);
  for await (const execution of client.workflow.list({
    query: `WorkflowType = 'experimentWorkflow' AND ExpctlTag = '${tag}' AND ExecutionStatus = 'Running'`,
  }))
    yield execution.workflowId;
}

/** How many experiments Temporal's visibility holds whose tag starts with `prefix` (0 where it cannot count). */
export async function countExperimentsOfTags(client: Client, prefix: string): Promise<number> {
  const problem = tagProblem(prefix, 'tag prefix');
  if (problem) throw new Error(problem);
  const answer = await client.workflow.count(`ExpctlTag STARTS_WITH '${prefix}'`).catch(() => ({ count: 0 }));
  return answer.count;
}

/** A running run's environment record, from its train step's heartbeat (see temporal/training-environment.ts). */
export { trainingEnvironment } from '../temporal/training-environment.js';
