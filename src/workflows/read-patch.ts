import { proxyActivities } from '@temporalio/workflow';
import type { createHostActivities } from '../activities/host.js';

/** How long the validating host's queue may leave a patch read unanswered before the read fails. */
export const HOST_PATCH_ANSWER_SECONDS = 30;

/**
 * Reads one page of the patch a host kept when it validated a run, for the orchestrator's
 * storePatch, which keeps it whole in the catalog. The page crosses this short workflow's history,
 * never the experiment's: that one holds only the patch's sha256, size and where it is.
 */
export async function readPatchWorkflow(input: {
  hostQueue: string;
  experimentId: string;
  offset: number;
  maxBytes: number;
}): Promise<{ data: string; size: number }> {
  const host = proxyActivities<ReturnType<typeof createHostActivities>>({
    taskQueue: input.hostQueue,
    scheduleToStartTimeout: `${HOST_PATCH_ANSWER_SECONDS}s`,
    startToCloseTimeout: '30s',
    retry: { maximumAttempts: 3 },
  });
  return host.readPatch(input.experimentId, input.offset, input.maxBytes);
}
