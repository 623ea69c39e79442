import crypto from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { parseExperimentRequest, type ExperimentRequestInput } from '../domain/request.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import { experimentWorkflow } from '../workflows/experiment.js';

export type ExperimentHandle = WorkflowHandle<typeof experimentWorkflow>;

/** Experiment ID = workflow ID. With an idempotency key it is derived from the key, so resubmitting returns the same run. */
export function experimentIdFor(tag: string, idempotencyKey?: string, now = new Date()): string {
  if (idempotencyKey) return `exp-${tag}-k${crypto.createHash('sha256').update(`${tag}\0${idempotencyKey}`).digest('hex').slice(0, 16)}`;
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  return `exp-${tag}-${stamp}-${crypto.randomBytes(3).toString('hex')}`;
}

export interface Submitted {
  experimentId: string;
  handle: ExperimentHandle;
}

/** Validates the request (throws RequestValidationError) and starts its workflow. */
export async function submitExperiment(
  client: Client,
  input: ExperimentRequestInput,
  options: { priority?: number; origin?: { kind: 'retry' | 'rerun'; of: string } } = {},
): Promise<Submitted> {
  const request = parseExperimentRequest(input);
  const experimentId = experimentIdFor(request.tag, request.idempotencyKey);
  try {
    const handle = await client.workflow.start(experimentWorkflow, {
      workflowId: experimentId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{ experimentId, request, submittedAt: new Date().toISOString(), priority: options.priority ?? 0, ...(options.origin ? { origin: options.origin } : {}) }],
      // Concurrent submissions with one key attach to the same run; a finished one is never rerun.
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      typedSearchAttributes: [
        { key: SA.tag, value: request.tag },
        { key: SA.category, value: request.category },
        { key: SA.status, value: 'submitted' },
      ],
      memo: { hypothesis: request.hypothesis, commit: request.commit, description: request.description },
    });
    return { experimentId, handle };
  } catch (error) {
    if (error instanceof WorkflowExecutionAlreadyStartedError) {
      return { experimentId, handle: client.workflow.getHandle<typeof experimentWorkflow>(experimentId) };
    }
    throw error;
  }
}
