import proto from '@temporalio/proto';

type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;
const { EventType } = proto.temporal.api.enums.v1;

/** One event as a line: id, type, and what names it (signal, update id, activity or child type). */
function eventLine(event: HistoryEvent): string {
  const type = (EventType[Number(event.eventType)] ?? `${event.eventType}`).replace(/^EVENT_TYPE_/, '').toLowerCase();
  const detail =
    event.workflowExecutionSignaledEventAttributes?.signalName ??
    event.signalExternalWorkflowExecutionInitiatedEventAttributes?.signalName ??
    event.workflowExecutionUpdateAcceptedEventAttributes?.protocolInstanceId ??
    event.workflowExecutionUpdateCompletedEventAttributes?.meta?.updateId ??
    event.activityTaskScheduledEventAttributes?.activityType?.name ??
    event.startChildWorkflowExecutionInitiatedEventAttributes?.workflowType?.name ??
    event.workflowTaskFailedEventAttributes?.failure?.message?.split('\n')[0] ??
    (event.workflowTaskCompletedEventAttributes
      ? `scheduled ${event.workflowTaskCompletedEventAttributes.scheduledEventId}`
      : undefined) ??
    '';
  return `${event.eventId} ${type}${detail ? ` ${detail}` : ''}`;
}

/** The events around `eventId` (where a replay stopped), one a line: structure only, no payload. */
export function historyExcerpt(events: HistoryEvent[], eventId: number, before = 16, after = 4): string[] {
  return events
    .filter((event) => {
      const id = Number(event.eventId);
      return id >= eventId - before && id <= eventId + after;
    })
    .map(eventLine);
}
