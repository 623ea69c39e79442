import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { MAX_BATCH_SIZE } from '../domain/tournament.js';
import {
  parseExperimentRequest,
  parsePriority,
  RequestValidationError,
  type ExperimentRequest,
  type ExperimentRequestInput,
} from '../domain/request.js';
import { loadCredential, signRequest, type Credential } from '../security/credentials.js';
import { loadSealingKey } from '../security/sealed-secrets.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import { batchSignedContent, batchWorkflow } from '../workflows/batch.js';
import type { BatchInput, BatchSnapshot } from '../workflows/batch-state.js';
import { batchStateQuery, placementCheckQuery } from '../workflows/definitions.js';
import type { ExperimentInput } from '../workflows/experiment-state.js';
import { checkHijackVariables, keyedWorkflowId, sealRequestSecrets } from './experiments.js';
import { contentDigest } from '../security/content-digest.js';

export type BatchHandle = WorkflowHandle<typeof batchWorkflow>;

/** Batch ID = workflow ID, derived from the idempotency key when there is one. */
export function batchIdFor(tag: string, idempotencyKey?: string, now = new Date()): string {
  return keyedWorkflowId('batch', tag, idempotencyKey, now);
}

/** Whether an ID names a batch (experiment IDs start with `exp-`). */
export function isBatchId(id: string): boolean {
  return id.startsWith('batch-');
}

/** A child's experiment ID: its batch's, numbered in the order the commits were given. */
export function batchMemberId(batchId: string, index: number): string {
  return `exp-${batchId.replace(/^batch-/, '')}-v${index + 1}`;
}

export interface BatchSubmission {
  /** Everything as for `run`, but the commit and hypothesis, which are each variant's. */
  template: Omit<ExperimentRequestInput, 'commit' | 'hypothesis'>;
  base: string;
  variants: { commit: string; hypothesis: string }[];
  deadlineSeconds?: number;
  idempotencyKey?: string;
  priority?: number;
  credential?: Credential;
}

/**
 * The class a batch runs on: the request's, or for `any` the class with the most capable online
 * slots, so every variant is judged on the same kind of accelerator.
 */
async function batchClass(client: Client, request: ExperimentRequest): Promise<string> {
  if (request.requirements.acceleratorClass !== 'any') return request.requirements.acceleratorClass;
  let check;
  try {
    check = await client.workflow.getHandle(POOL_WORKFLOW_ID).query(placementCheckQuery, request.requirements);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError)
      throw new RequestValidationError(['no worker has joined the fleet yet (start one with `expctl worker`)']);
    throw error;
  }
  if (check.refusal) throw new RequestValidationError([check.refusal]);
  if (!check.widestClass)
    throw new RequestValidationError(['the fleet did not name an accelerator class for the batch']);
  return check.widestClass;
}

/** The options of a batch beside its variants' requests. */
export type BatchOptions = Pick<
  BatchSubmission,
  'base' | 'deadlineSeconds' | 'idempotencyKey' | 'priority' | 'credential'
>;

/**
 * Validates every variant's request (throws RequestValidationError before anything starts), signs
 * each child and the batch, and starts the batch. The same key returns the same batch.
 */
export async function submitBatch(
  client: Client,
  submission: BatchSubmission,
): Promise<{ batchId: string; handle: BatchHandle; members: string[] }> {
  const { variants, template, ...options } = submission;
  checkVariants(variants, submission.base);
  const requests = variants.map((variant) =>
    parseExperimentRequest({ ...template, ...variant, idempotencyKey: undefined }),
  );
  return submitBatchRequests(client, requests, options);
}

/** The batch's own rules on its variants: at least one, at most the bound, each once, none the base. */
export function checkVariants(variants: { commit: string }[], base: string): void {
  if (variants.length === 0) throw new RequestValidationError(['a batch needs at least one commit']);
  if (variants.length > MAX_BATCH_SIZE)
    throw new RequestValidationError([`a batch holds at most ${MAX_BATCH_SIZE} commits, not ${variants.length}`]);
  const repeated = variants.map((v) => v.commit).filter((commit, i, all) => all.indexOf(commit) !== i);
  if (repeated.length > 0) throw new RequestValidationError([`commit ${repeated[0]} is given twice`]);
  if (variants.some((v) => v.commit === base))
    throw new RequestValidationError([`the base ${base} is not a variant of itself`]);
}

/**
 * Starts a batch of requests already parsed at the caller's boundary (the CLI's `batch`), as they
 * are: nothing is parsed again or changed on the way but their `--secret` values, sealed for the
 * workers, and the accelerator class every variant is judged on.
 */
export async function submitBatchRequests(
  client: Client,
  requests: ExperimentRequest[],
  submission: BatchOptions,
): Promise<{ batchId: string; handle: BatchHandle; members: string[] }> {
  checkVariants(requests, submission.base);
  if (submission.deadlineSeconds !== undefined && !(submission.deadlineSeconds > 0))
    throw new RequestValidationError(['--deadline must be a positive number of seconds']);
  // A batch's key is the batch's: its members are keyed by the batch.
  if (requests.some((request) => request.idempotencyKey !== undefined))
    throw new RequestValidationError(["a batch's variants take no idempotency key of their own; give the batch one"]);
  await checkHijackVariables(client, requests[0]!);
  const acceleratorClass = await batchClass(client, requests[0]!);

  const credential = submission.credential ?? loadCredential();
  const batchId = batchIdFor(requests[0]!.tag, submission.idempotencyKey);
  const deadline =
    submission.deadlineSeconds === undefined
      ? undefined
      : new Date(Date.now() + submission.deadlineSeconds * 1000).toISOString();
  const priority = parsePriority(submission.priority);
  const sealingKey = Object.keys(requests[0]!.secrets).length > 0 ? await loadSealingKey() : undefined;
  const sealed = await Promise.all(
    requests.map((parsed, index) => sealRequestSecrets(parsed, batchMemberId(batchId, index), sealingKey)),
  );
  const members: ExperimentInput[] = sealed.map((parsed, index) => {
    const experimentId = batchMemberId(batchId, index);
    const request = { ...parsed, requirements: { ...parsed.requirements, acceleratorClass } };
    const batch = { batchId, ...(deadline ? { deadline } : {}) };
    const signed = { experimentId, request, priority, batch };
    const authorization = signRequest(credential, {
      action: 'submit',
      target: experimentId,
      digest: contentDigest(signed),
    });
    return { ...signed, submittedAt: new Date().toISOString(), authorization };
  });
  const input: BatchInput = {
    batchId,
    tag: requests[0]!.tag,
    base: submission.base,
    members,
    ...(deadline ? { deadline } : {}),
    submittedAt: new Date().toISOString(),
  };
  input.authorization = signRequest(credential, {
    action: 'submit',
    target: batchId,
    digest: contentDigest(batchSignedContent(input)),
  });
  let handle: BatchHandle;
  try {
    handle = await client.workflow.start(batchWorkflow, {
      workflowId: batchId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      typedSearchAttributes: [{ key: SA.tag, value: input.tag }],
      memo: { base: input.base, commits: requests.map((request) => request.commit) },
    });
  } catch (error) {
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    handle = client.workflow.getHandle<typeof batchWorkflow>(batchId);
  }
  // A key reused for other commits: refused, as `run` refuses a key reused for another request.
  if (submission.idempotencyKey) {
    const existing = await handle.query(batchStateQuery);
    const theirs = existing.members.map((m) => m.commit).join(',');
    if (theirs !== requests.map((request) => request.commit).join(','))
      throw new RequestValidationError([
        `--idempotency-key: already used for batch ${batchId} with other commits; use a new key`,
      ]);
  }
  return { batchId, handle, members: members.map((m) => m.experimentId) };
}

/** The handle of a batch, to wait for its decision. */
export function batchHandle(client: Client, batchId: string): BatchHandle {
  return client.workflow.getHandle<typeof batchWorkflow>(batchId);
}

/** A batch's live state (its children and what ended), or undefined when Temporal has no such workflow. */
export async function batchState(client: Client, batchId: string): Promise<BatchSnapshot | undefined> {
  try {
    return await batchHandle(client, batchId).query(batchStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}
