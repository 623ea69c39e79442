import {
  allHandlersFinished,
  condition,
  continueAsNew,
  defineSignal,
  defineUpdate,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { createHostActivities } from '../activities/host.js';
import type { createStoreActivities, StoredLog } from '../activities/store.js';

/** One page of a run's log, as the host's readLog activity returns it. */
export interface LogPage {
  text: string;
  nextOffset: number;
  size: number;
}

/** How long a host queue may leave a log read unanswered before the host counts as unreachable. */
export const HOST_LOG_ANSWER_SECONDS = 10;
/** A log session with no read for this long ends (its reader is gone). */
const SESSION_IDLE = '2 minutes';

/** Reads the next page from `offset`; with `waitMs`, the host holds the call until the log grows. */
export const readLogPageUpdate = defineUpdate<LogPage, [{ offset: number; maxBytes: number; waitMs: number }]>(
  'readLogPage',
);

/** The attempts whose logs were shipped to the fleet store (the orchestrator reads it, whatever host is gone). */
export const storedLogsUpdate = defineUpdate<StoredLog[], []>('storedLogs');

/** A page of one attempt's shipped log, from the fleet store. */
export const readStoredLogPageUpdate = defineUpdate<LogPage, [{ attempt: number; offset: number; maxBytes: number }]>(
  'readStoredLogPage',
);

/** The reader is done: the session ends once its reads have finished. */
export const endLogSessionSignal = defineSignal('endLogSession');

/**
 * One `expctl logs` reader's session with a host: every page, including a follower's long polls,
 * is an update of this one workflow, so following a log starts one workflow, not one per read.
 * It continues as new when its history grows and ends when its reader has been gone a while.
 */
export async function logSessionWorkflow(input: { hostQueue: string; experimentId: string }): Promise<void> {
  const host = proxyActivities<ReturnType<typeof createHostActivities>>({
    taskQueue: input.hostQueue,
    // An unreachable host is reported within seconds, not after a minute of retries.
    scheduleToStartTimeout: `${HOST_LOG_ANSWER_SECONDS}s`,
    startToCloseTimeout: '1m',
    heartbeatTimeout: '10s',
    retry: { maximumAttempts: 1 },
  });
  // On the control queue: the orchestrator holds the fleet store.
  const store = proxyActivities<ReturnType<typeof createStoreActivities>>({
    startToCloseTimeout: '1m',
    retry: { initialInterval: '1s', maximumAttempts: 3 },
  });
  let reads = 0;
  let ended = false;
  setHandler(readLogPageUpdate, ({ offset, maxBytes, waitMs }) => {
    reads++;
    return host.readLog(input.experimentId, offset, maxBytes, waitMs);
  });
  setHandler(storedLogsUpdate, () => {
    reads++;
    return store.storedLogs(input.experimentId);
  });
  setHandler(readStoredLogPageUpdate, ({ attempt, offset, maxBytes }) => {
    reads++;
    return store.readStoredLog(input.experimentId, attempt, offset, maxBytes);
  });
  setHandler(endLogSessionSignal, () => {
    ended = true;
  });
  for (;;) {
    const seen = reads;
    const used = await condition(() => ended || reads !== seen, SESSION_IDLE);
    if (ended || !used || workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      if (ended || !used) return;
      await continueAsNew<typeof logSessionWorkflow>(input);
    }
  }
}
