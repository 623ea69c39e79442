import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  defineSignal,
  defineUpdate,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { createDatasetActivities } from '../activities/datasets.js';
import { PERMISSION_DENIED, type Authorization } from '../domain/authorization.js';
import { shardSizeProblem } from '../domain/bounds.js';
import {
  SHARD_UPLOAD_INVALID,
  uploadChunkProblem,
  UPLOAD_ID_PATTERN,
  UPLOAD_IDLE_MS,
  type ShardUploadStart,
} from '../domain/datasets.js';
import { localAuthorizer, requirePermission } from './authorize.js';
import { CONTROL_STEP } from './control-retry.js';

/** One chunk at its offset: the bytes as their own argument (a binary payload, not JSON). Returns the bytes held. */
export const uploadChunkUpdate = defineUpdate<number, [number, Uint8Array]>('uploadChunk');
/** The producer is done with the upload (its offer was taken or refused): whatever is left is discarded. */
export const finishUploadSignal = defineSignal('finishUpload');

/** Local: a chunk's bytes are recorded once in history (the update), never again as an activity's input. */
const spool = proxyLocalActivities<ReturnType<typeof createDatasetActivities>>(CONTROL_STEP);

/**
 * One shard's bytes on their way from a producer into the orchestrator's spool
 * (`expctl-upload-DATASET-ID`). The producer's signed request opens it; chunks come in order; the
 * dataset's offer (signed with the bytes' sha256) takes the spool file into the store. Bytes
 * nobody took are discarded when the producer finishes or after UPLOAD_IDLE_MS without a chunk.
 */
export async function shardUploadWorkflow(start: ShardUploadStart, authorization: Authorization): Promise<void> {
  let received = 0;
  let chunks = 0;
  let finished = false;
  let verdict: { refused: string; type: string } | { allowed: true } | undefined;

  setHandler(
    uploadChunkUpdate,
    async (offset, data) => {
      await condition(() => verdict !== undefined);
      if (verdict && 'refused' in verdict) throw ApplicationFailure.nonRetryable(verdict.refused, verdict.type);
      await spool.writeUploadChunk(start.id, offset, data);
      received = offset + data.length;
      chunks++;
      return received;
    },
    {
      validator: (offset, data) => {
        const problem = finished ? 'the upload is finished' : uploadChunkProblem(start, received, offset, data);
        if (problem) throw new Error(problem);
      },
    },
  );
  setHandler(finishUploadSignal, () => {
    finished = true;
  });

  const malformed = UPLOAD_ID_PATTERN.test(start.id)
    ? shardSizeProblem(start.bytes)
    : 'the upload id must be 32 lowercase hex digits';
  if (malformed) verdict = { refused: `${SHARD_UPLOAD_INVALID}: ${malformed}`, type: SHARD_UPLOAD_INVALID };
  else
    try {
      await requirePermission(
        {
          authorization,
          action: 'add_data',
          target: workflowInfo().workflowId,
          content: start,
          acceptedAt: workflowInfo().startTime.toISOString(),
          detail: `upload of ${start.bytes} bytes for ${start.dataset}`,
        },
        localAuthorizer,
      );
      verdict = { allowed: true };
    } catch (error) {
      if (!(error instanceof ApplicationFailure) || error.type !== PERMISSION_DENIED) throw error;
      verdict = { refused: error.message, type: PERMISSION_DENIED };
    }

  if ('allowed' in verdict) {
    for (;;) {
      const seen = chunks;
      if (!(await condition(() => finished || chunks !== seen, UPLOAD_IDLE_MS)) || finished) break;
    }
  }
  finished = true;
  await condition(allHandlersFinished);
  if ('allowed' in verdict) await spool.discardUpload(start.id);
}
