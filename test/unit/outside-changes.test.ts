import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { ownerRun, resetsIn } from '../../src/activities/outside-changes.js';

const { EventType, WorkflowTaskFailedCause } = proto.temporal.api.enums.v1;

const taskFailed = (
  eventId: number,
  cause: proto.temporal.api.enums.v1.WorkflowTaskFailedCause,
  identity: string,
  baseRunId = '',
) => ({
  eventId,
  eventType: EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
  workflowTaskFailedEventAttributes: {
    cause,
    identity,
    baseRunId,
    newRunId: `after-${baseRunId}`,
    failure: { message: '<unknown-user>: operator reset' },
  },
});

describe('the resets a run history holds', () => {
  it('are its workflow tasks failed by a reset, with no identity where the server names itself', () => {
    const events = [
      { eventId: 1, eventType: EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED },
      taskFailed(12, WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_UNHANDLED_COMMAND, 'worker@host'),
      taskFailed(40, WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW, 'history-service', 'run-a'),
      taskFailed(50, WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW, 'ops@laptop', 'run-b'),
    ];
    // As the server's history arrives: event ids are Longs.
    expect(resetsIn(events.map((event) => proto.temporal.api.history.v1.HistoryEvent.fromObject(event)))).toEqual([
      {
        eventId: 40,
        baseRunId: 'run-a',
        newRunId: 'after-run-a',
        identity: null,
        reason: '<unknown-user>: operator reset',
      },
      {
        eventId: 50,
        baseRunId: 'run-b',
        newRunId: 'after-run-b',
        identity: 'ops@laptop',
        reason: '<unknown-user>: operator reset',
      },
    ]);
  });
});

describe('the run an event is audited under', () => {
  const resets = [
    { eventId: 40, baseRunId: 'run-a', newRunId: 'run-b', identity: null, reason: null },
    { eventId: 50, baseRunId: 'run-b', newRunId: 'run-c', identity: null, reason: null },
  ];

  it('is the run itself when nothing reset it', () => {
    expect(ownerRun(10, [], 'run-c')).toBe('run-c');
  });

  it('is the run an event was copied from, through every reset, so a copy is audited once', () => {
    expect(ownerRun(10, resets, 'run-c')).toBe('run-a');
    expect(ownerRun(39, resets, 'run-c')).toBe('run-a');
    expect(ownerRun(45, resets, 'run-c')).toBe('run-b');
    expect(ownerRun(55, resets, 'run-c')).toBe('run-c');
  });
});
