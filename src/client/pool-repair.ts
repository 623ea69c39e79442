import crypto from 'node:crypto';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter, type DataConverter, type Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { POOL_WORKFLOW_ID } from '../shared/constants.js';

const { EventType, ResetReapplyExcludeType } = proto.temporal.api.enums.v1;
type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;
type EventId = NonNullable<
  proto.temporal.api.workflowservice.v1.IResetWorkflowExecutionRequest['workflowTaskFinishEventId']
>;

/** Signals re-sent at once before the pool is asked whether it took them (one by one after a failure). */
const BATCH = 50;
/** How long one batch may take the pool to apply (it is polled meanwhile). */
const SETTLE_TIMEOUT_MS = 60_000;
const IDENTITY = 'expctl pool repair';

/** A signal the repair did not give back to the pool, and why. */
export interface DroppedSignal {
  signal: string;
  /** Where it was in the stalled run's history. */
  eventId: number;
  /** Its sender's Temporal identity, as the history records it. */
  sentBy: string | null;
  reason: string;
}

export interface PoolRepair {
  /** Whether the pool's workflow tasks were failing when the repair looked. */
  stalled: boolean;
  /** Why the stalled run's latest workflow task failed. */
  failure: string | null;
  /** The run repaired, and the run that serves now (the same when nothing was to repair). */
  runId: string;
  repairedRunId: string;
  /** The last workflow task that had completed: the pool was reset to it. */
  resetToEventId: number | null;
  /** Signals given back to the pool, in their order. */
  resent: number;
  dropped: DroppedSignal[];
}

export class PoolRepairError extends Error {}

/** The signal as the history holds it: its payloads still encoded, as the sender sent them. */
interface Sent {
  eventId: number;
  signal: string;
  input: proto.temporal.api.common.v1.IPayloads | null | undefined;
  header: proto.temporal.api.common.v1.IHeader | null | undefined;
  sentBy: string | null;
}

/**
 * Repairs a pool whose workflow tasks fail (a stall: every retry of the task fails again on the same
 * message). The pool is reset to its last completed workflow task with no signal re-applied, then
 * the signals it had received since are given back in their order, except those the codec cannot
 * read and those whose handling fails the pool's task again: each of those is found (the task after
 * it fails), the pool is reset past it again, and it is reported as dropped. A pool whose task
 * fails without any message (a bug in the pool itself) is left as it is and said so.
 */
export async function repairPool(client: Client, dataConverter: DataConverter): Promise<PoolRepair> {
  const { runId, status } = await currentRun(client);
  if (status !== 'RUNNING')
    throw new PoolRepairError(
      `the pool is ${status.toLowerCase()}, not stalled: the orchestrator or a worker starts it again`,
    );
  const events = await historyOf(client, runId);
  const lastGood = lastCompletedTask(events);
  const failure = failureAfter(events, lastGood);
  const nothing = { runId, repairedRunId: runId, resent: 0, dropped: [] };
  if (failure === null) return { stalled: false, failure: null, resetToEventId: null, ...nothing };
  if (lastGood === null)
    throw new PoolRepairError(`the pool's first workflow task fails (${failure}): there is no good task to reset to`);

  let current = await resetTo(client, runId, lastGood, 'expctl pool repair: reset past a failing workflow task');
  // Read once the stalled run is closed: a signal the server held back while a workflow task was
  // in flight reaches that run's history only as it closes.
  const dropped: DroppedSignal[] = [];
  const readable: Sent[] = [];
  for (const sent of signalsAfter(await historyOf(client, runId), lastGood)) {
    const unreadable = await unreadableBecause(dataConverter, sent.input?.payloads ?? []);
    if (unreadable === null) readable.push(sent);
    else dropped.push({ ...describe(sent), reason: `the codec cannot read it (${unreadable})` });
  }
  const alone = await settled(client, current, lastGood);
  if (!alone.ok)
    throw new PoolRepairError(
      `the pool's task fails even with no message given back (${alone.failure}): a fault in the pool, not a message; reset run ${current} left as it is`,
    );
  const replay = await giveBack(client, current, readable);
  return {
    stalled: true,
    failure,
    runId,
    repairedRunId: replay.runId,
    resetToEventId: lastGood,
    resent: replay.resent,
    dropped: [...dropped, ...replay.dropped],
  };
}

/**
 * Gives the signals back in batches. When the pool's task fails, the signals it had not applied
 * are tried again one by one after a reset; one that fails the task alone is dropped. Signals
 * others sent meanwhile (workers' heartbeats) are handled the same way.
 */
async function giveBack(
  client: Client,
  runId: string,
  signals: Sent[],
): Promise<{ runId: string; resent: number; dropped: DroppedSignal[] }> {
  // The repair's own copies map back to the stalled run's events, for the report.
  const original = new Map(signals.map((sent) => [keyOf(sent), sent]));
  const dropped: DroppedSignal[] = [];
  const queue = [...signals];
  let current = runId;
  let careful = 0;
  let resent = 0;
  while (queue.length > 0) {
    const batch = queue.splice(0, careful > 0 ? 1 : BATCH);
    careful = Math.max(0, careful - batch.length);
    const lastSignal = await resend(client, current, batch);
    const outcome = await settled(client, current, lastSignal);
    if (outcome.ok) {
      resent += batch.length;
      continue;
    }
    const runEvents = await historyOf(client, current);
    const good = lastCompletedTask(runEvents)!;
    const unapplied = signalsAfter(runEvents, good).map((sent) => original.get(keyOf(sent)) ?? sent);
    resent += Math.max(0, batch.length - unapplied.length);
    current = await resetTo(client, current, good, 'expctl pool repair: reset past a message the pool cannot handle');
    const again = await settled(client, current, good);
    if (!again.ok) throw new PoolRepairError(`the pool's task fails after a reset too (${again.failure})`);
    if (unapplied.length === 1) {
      // The task before it completed and the one with it alone failed: this is the message.
      dropped.push({ ...describe(unapplied[0]!), reason: `the pool's task failed on it: ${outcome.failure}` });
    } else {
      queue.unshift(...unapplied);
      careful = unapplied.length;
    }
  }
  return { runId: current, resent, dropped };
}

/** A signal's name and encoded input: the same message, wherever it was sent. */
function keyOf(sent: Sent): string {
  const data = (sent.input?.payloads ?? []).map((payload) => Buffer.from(payload.data ?? []).toString('base64'));
  return `${sent.signal}\0${data.join('\0')}`;
}

const describe = (sent: Sent) => ({ signal: sent.signal, eventId: sent.eventId, sentBy: sent.sentBy });

async function currentRun(client: Client): Promise<{ runId: string; status: string }> {
  try {
    const description = await client.workflow.getHandle(POOL_WORKFLOW_ID).describe();
    return { runId: description.runId, status: description.status.name };
  } catch (error) {
    if ((error as Error).name === 'WorkflowNotFoundError')
      throw new PoolRepairError('there is no pool yet (no worker has joined the fleet)');
    throw error;
  }
}

async function historyOf(client: Client, runId: string): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId: POOL_WORKFLOW_ID, runId },
      ...(nextPageToken ? { nextPageToken } : {}),
    });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return events;
}

const idOf = (event: HistoryEvent) => Number(event.eventId);

function lastCompletedTask(events: HistoryEvent[]): number | null {
  const completed = events.filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED);
  return completed.length > 0 ? idOf(completed[completed.length - 1]!) : null;
}

/** Why the latest workflow task after `after` failed, or null when none did. */
function failureAfter(events: HistoryEvent[], after: number | null): string | null {
  const failed = events.filter(
    (e) => idOf(e) > (after ?? 0) && e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
  );
  const last = failed[failed.length - 1];
  return last ? (last.workflowTaskFailedEventAttributes?.failure?.message ?? 'workflow task failed') : null;
}

function signalsAfter(events: HistoryEvent[], after: number): Sent[] {
  return events
    .filter((e) => idOf(e) > after && e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)
    .map((e) => {
      const attributes = e.workflowExecutionSignaledEventAttributes!;
      return {
        eventId: idOf(e),
        signal: attributes.signalName ?? '',
        input: attributes.input,
        header: attributes.header,
        sentBy: attributes.identity || null,
      };
    });
}

/** Why the codec (or the payload converter) cannot read these payloads, or null when it can. */
async function unreadableBecause(dataConverter: DataConverter, payloads: Payload[]): Promise<string | null> {
  try {
    let decoded = payloads;
    for (const codec of [...(dataConverter.payloadCodecs ?? [])].reverse()) decoded = await codec.decode(decoded);
    for (const payload of decoded) defaultPayloadConverter.fromPayload(payload);
    return null;
  } catch (error) {
    return (error as Error).message;
  }
}

async function resetTo(client: Client, runId: string, eventId: number, reason: string): Promise<string> {
  const { runId: newRunId } = await client.workflowService.resetWorkflowExecution({
    namespace: client.options.namespace,
    workflowExecution: { workflowId: POOL_WORKFLOW_ID, runId },
    reason,
    // protobufjs takes a number where the type says Long (an event id is far below 2^53).
    workflowTaskFinishEventId: eventId as unknown as EventId,
    requestId: crypto.randomUUID(),
    resetReapplyExcludeTypes: [
      ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_SIGNAL,
      ResetReapplyExcludeType.RESET_REAPPLY_EXCLUDE_TYPE_UPDATE,
    ],
  });
  return newRunId!;
}

/** Sends the signals again, their payloads as recorded; returns the event id of the last one. */
async function resend(client: Client, runId: string, batch: Sent[]): Promise<number> {
  for (const sent of batch)
    await client.workflowService.signalWorkflowExecution({
      namespace: client.options.namespace,
      workflowExecution: { workflowId: POOL_WORKFLOW_ID, runId },
      signalName: sent.signal,
      input: sent.input ?? null,
      header: sent.header ?? null,
      identity: IDENTITY,
      requestId: crypto.randomUUID(),
    });
  const events = await historyOf(client, runId);
  const signaled = events.filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED);
  return signaled.length > 0 ? idOf(signaled[signaled.length - 1]!) : 0;
}

/**
 * Waits until a workflow task that started after event `after` has ended: ok when it completed,
 * with the failure when it failed.
 */
async function settled(
  client: Client,
  runId: string,
  after: number,
): Promise<{ ok: true } | { ok: false; failure: string }> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (;;) {
    const events = await historyOf(client, runId);
    const started = events.find((e) => idOf(e) > after && e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED);
    const ended =
      started &&
      events.find(
        (e) =>
          idOf(e) > idOf(started) &&
          (e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED ||
            e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED),
      );
    if (ended?.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) return { ok: true };
    if (ended)
      return {
        ok: false,
        failure: ended.workflowTaskFailedEventAttributes?.failure?.message ?? 'workflow task failed',
      };
    if (Date.now() > deadline)
      throw new PoolRepairError(
        `the pool took no workflow task within ${SETTLE_TIMEOUT_MS / 1000} s: is the orchestrator running?`,
      );
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
