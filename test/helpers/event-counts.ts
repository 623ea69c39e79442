import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';

const { EventType } = proto.temporal.api.enums.v1;
export type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

/** A workflow task's own events: scheduled, started, and how it ended. */
const TASK_EVENTS = new Set<number>([
  EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
  EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
  EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
  EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
  EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
]);

/** Events a workflow task writes with its completion (its commands and their immediate results). */
const COMMAND_EVENTS = new Set<number>([
  EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
  EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
  EventType.EVENT_TYPE_TIMER_STARTED,
  EventType.EVENT_TYPE_TIMER_CANCELED,
  EventType.EVENT_TYPE_MARKER_RECORDED,
  EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
  EventType.EVENT_TYPE_REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
  EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
  EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
  EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
  EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
]);

/** An event type's short name: WORKFLOW_TASK_SCHEDULED for EVENT_TYPE_WORKFLOW_TASK_SCHEDULED. */
export function eventTypeName(event: HistoryEvent): string {
  return (EventType[event.eventType ?? 0] ?? `TYPE_${event.eventType}`).replace(/^EVENT_TYPE_/, '');
}

/** How many events of each type, most frequent first. */
export function eventTypeCounts(events: HistoryEvent[]): Record<string, number> {
  const counts = new Map<string, number>();
  for (const event of events) counts.set(eventTypeName(event), (counts.get(eventTypeName(event)) ?? 0) + 1);
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]));
}

/**
 * A history cut into its workflow tasks: each task's events (what woke it, the task itself, what
 * it wrote), with what woke it apart. Events no task has handled yet form a last group.
 */
export function workflowTasks(events: HistoryEvent[]): { wokenBy: HistoryEvent[]; events: HistoryEvent[] }[] {
  const tasks: { wokenBy: HistoryEvent[]; events: HistoryEvent[] }[] = [];
  let waking: HistoryEvent[] = [];
  for (const event of events) {
    const type = event.eventType ?? 0;
    if (type === EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED) {
      tasks.push({ wokenBy: waking, events: [...waking, event] });
      waking = [];
    } else if (TASK_EVENTS.has(type) || (COMMAND_EVENTS.has(type) && tasks.length > 0 && waking.length === 0)) {
      tasks.at(-1)!.events.push(event);
    } else waking.push(event);
  }
  if (waking.length > 0) tasks.push({ wokenBy: waking, events: waking });
  return tasks;
}

/** Timer events: a task that only re-arms the pool's wake-up writes these. */
const TIMER_EVENTS = new Set<number>([
  EventType.EVENT_TYPE_TIMER_STARTED,
  EventType.EVENT_TYPE_TIMER_FIRED,
  EventType.EVENT_TYPE_TIMER_CANCELED,
]);

/**
 * Whether a workflow task did nothing but take these signals (a host's registration heartbeat):
 * woken only by them, and writing nothing but its own events and timers. A task that also answered
 * an update or sent a signal did work for runs, and is not one.
 */
export function onlyTook(task: { wokenBy: HistoryEvent[]; events: HistoryEvent[] }, signalNames: string[]): boolean {
  const taken = (event: HistoryEvent) =>
    signalNames.includes(event.workflowExecutionSignaledEventAttributes?.signalName ?? '');
  const own = (event: HistoryEvent) => TASK_EVENTS.has(event.eventType ?? 0) || TIMER_EVENTS.has(event.eventType ?? 0);
  return (
    task.wokenBy.length > 0 && task.wokenBy.every(taken) && task.events.every((event) => taken(event) || own(event))
  );
}

/**
 * A workflow's events from a point on (the event id after which to count, in the run named),
 * across its continue-as-new chain to its current run.
 */
export async function eventsSince(
  client: Client,
  workflowId: string,
  from: { runId: string; afterEventId: number },
): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  for (let runId: string | undefined = from.runId, first = true; runId; first = false) {
    const history: { events?: HistoryEvent[] | null } = await client.workflow
      .getHandle(workflowId, runId)
      .fetchHistory();
    const own: HistoryEvent[] = history.events ?? [];
    events.push(...(first ? own.filter((event) => Number(event.eventId) > from.afterEventId) : own));
    runId = own.at(-1)?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
  }
  return events;
}
