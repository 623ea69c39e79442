import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import type { AuditEntry, Catalog } from '../catalog/catalog.js';
import type { RecordUpdate } from '../catalog/record.js';
import { isTerminal } from '../domain/experiment.js';
import { eventTimeMs } from '../shared/history-events.js';

const { EventType, WorkflowTaskFailedCause } = proto.temporal.api.enums.v1;
type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

export interface OutsideChangeDeps {
  client: Client;
  catalog: Catalog;
  /** The strict codecs: a signal they refuse was dropped and audited already (refused-messages.ts). */
  codecs: readonly PayloadCodec[];
}

export interface OutsideChangesInput {
  workflowId: string;
  runId: string;
  /** What expctl did in the end, for the lines (e.g. "ended the run canceled: …"). */
  outcome: string;
}

/** A `temporal workflow reset` as the new run's history holds it: the task it failed, from which run, by whom. */
export interface Reset {
  eventId: number;
  baseRunId: string;
  newRunId: string;
  identity: string | null;
  reason: string | null;
}

/** What the Temporal server (v1.29) writes as the identity of the events of a reset it made. */
const SERVER_IDENTITIES = new Set(['history-service', 'history-resetter']);

const who = (identity: string | null | undefined) =>
  identity ? `Temporal identity "${identity}"` : 'an unknown Temporal identity';

const eventTime = (event: HistoryEvent) => new Date(eventTimeMs(event)).toISOString();

async function historyOf(client: Client, workflowId: string, runId: string): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId, runId },
      ...(nextPageToken ? { nextPageToken } : {}),
    });
    events.push(...(page.history?.events ?? []));
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return events;
}

export function resetsIn(events: HistoryEvent[]): Reset[] {
  return events.flatMap((event) => {
    const failed = event.workflowTaskFailedEventAttributes;
    if (event.eventType !== EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED || !failed) return [];
    if (failed.cause !== WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW) return [];
    return [
      {
        eventId: Number(event.eventId),
        baseRunId: failed.baseRunId ?? '',
        newRunId: failed.newRunId ?? '',
        // The server names itself here (it records no caller for a reset): that is nobody's identity.
        identity: failed.identity && !SERVER_IDENTITIES.has(failed.identity) ? failed.identity : null,
        reason: failed.failure?.message || null,
      },
    ];
  });
}

/**
 * The run whose history an event first appeared in: a reset copies the events before its point
 * from the run it reset, so each is audited under that run, once, however often it is copied.
 */
export function ownerRun(eventId: number, resets: Reset[], runId: string): string {
  const copiedBy = resets.find((reset) => reset.eventId > eventId);
  return copiedBy?.baseRunId || runId;
}

/**
 * The audit of what was done to a workflow from outside expctl, read from its history: a
 * Temporal-level cancel (`temporal workflow cancel`, the Web UI's Cancel), a `temporal workflow
 * reset`, and a signal a client sent with a payload the codec accepted (expctl's own signals to
 * an experiment come from other workflows). Each line names the Temporal identity the server
 * recorded on the event, when, and what expctl did. A terminate ends the workflow with no code run
 * after it: its line is written by the pool's lease check (lease-holders.ts).
 */
export function createOutsideChangeActivities({ client, catalog, codecs }: OutsideChangeDeps) {
  const decodes = async (payloads: Payload[]): Promise<boolean> => {
    try {
      for (const codec of [...codecs].reverse()) payloads = await codec.decode(payloads);
      return true;
    } catch {
      return false;
    }
  };

  const lineFor = async (
    event: HistoryEvent,
    input: OutsideChangesInput,
    resets: Reset[],
  ): Promise<AuditEntry | undefined> => {
    const eventId = Number(event.eventId);
    const base = {
      at: eventTime(event),
      target: input.workflowId,
      role: null,
      credentialId: null,
      allowed: true,
      source: `${input.workflowId}/${ownerRun(eventId, resets, input.runId)}/event/${eventId}`,
    };
    const cancel = event.workflowExecutionCancelRequestedEventAttributes;
    if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED && cancel) {
      // A parent workflow's cancel of its child is expctl's own.
      if (cancel.externalWorkflowExecution?.workflowId) return undefined;
      return {
        ...base,
        action: 'temporal_cancel',
        actor: cancel.identity || null,
        detail: `a Temporal-level cancel was requested by ${who(cancel.identity)}${cancel.cause ? ` (cause: ${cancel.cause})` : ''}; expctl ${input.outcome}`,
      };
    }
    const signaled = event.workflowExecutionSignaledEventAttributes;
    if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED && signaled) {
      if (signaled.externalWorkflowExecution?.workflowId) return undefined;
      if (!(await decodes(signaled.input?.payloads ?? []))) return undefined;
      return {
        ...base,
        action: 'operator_signal',
        actor: signaled.identity || null,
        detail: `signal ${signaled.signalName ?? '?'} sent by ${who(signaled.identity)} from outside expctl; its payload decoded, so the workflow's handler received it; expctl ${input.outcome}`,
      };
    }
    return undefined;
  };

  const resetLine = (reset: Reset, events: HistoryEvent[], input: OutsideChangesInput): AuditEntry => {
    const event = events.find((candidate) => Number(candidate.eventId) === reset.eventId)!;
    return {
      at: eventTime(event),
      action: 'temporal_reset',
      target: input.workflowId,
      actor: reset.identity,
      role: null,
      credentialId: null,
      allowed: true,
      detail: `reset by ${reset.identity ? who(reset.identity) : 'a caller the Temporal server does not record'} from run ${reset.baseRunId} at event ${reset.eventId}${reset.reason ? ` (reason: ${reset.reason})` : ''}; the workflow ran on from there as run ${reset.newRunId}, and expctl ${input.outcome}`,
      source: `${input.workflowId}/reset/${reset.newRunId}`,
    };
  };

  return {
    /** Writes one line per change made from outside expctl in the run's history; returns how many. */
    async auditOutsideChanges(input: OutsideChangesInput): Promise<number> {
      const events = await historyOf(client, input.workflowId, input.runId);
      const resets = resetsIn(events);
      const lines = resets.map((reset) => resetLine(reset, events, input));
      for (const event of events) {
        const line = await lineFor(event, input, resets);
        if (line) lines.push(line);
      }
      for (const line of lines) await catalog.audit(line);
      return lines.length;
    },
  };
}

/**
 * recordExperiment, followed at a run's terminal state by the audit of what was done to it from
 * outside expctl: the run's history is complete by then, up to this very step. The record stands
 * if the audit fails; the failure is logged.
 */
export function auditingTerminalRecords(
  record: (update: RecordUpdate) => Promise<void>,
  outside: ReturnType<typeof createOutsideChangeActivities>,
): (update: RecordUpdate) => Promise<void> {
  return async (update) => {
    await record(update);
    if (update.status === undefined || !isTerminal(update.status)) return;
    // The run recording its end is the run whose history holds what was done to it.
    const runId = Context.current().info.workflowExecution?.runId ?? '';
    const outcome = `ended the run ${update.status}${update.reason ? `: ${update.reason}` : ''}`;
    try {
      await outside.auditOutsideChanges({ workflowId: update.experimentId, runId, outcome });
    } catch (error) {
      Context.current().log.error('could not audit the changes made to a run from outside expctl', {
        experimentId: update.experimentId,
        error: (error as Error).message,
      });
    }
  };
}
