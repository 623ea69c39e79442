import { asyncLocalStorage } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import type { Catalog } from '../catalog/catalog.js';
import type { RefusedMessage } from '../workflows/definitions.js';

const { EventType } = proto.temporal.api.enums.v1;
type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

export interface RefusedMessageDeps {
  client: Client;
  catalog: Catalog;
  /** The strict codecs (codec.ts EncryptionCodec): a payload they refuse is the one that was dropped. */
  codecs: readonly PayloadCodec[];
}

export interface AuditRefusedInput {
  workflowId: string;
  runId: string;
  /** History events up to this one were matched by an earlier audit. */
  afterEventId: number;
  refused: RefusedMessage[];
}

/** A message as the history holds it: what it is, who the server says sent it, its payloads. */
interface Sent {
  eventId: number;
  kind: RefusedMessage['kind'];
  name: string;
  identity: string | null;
  payloads: Payload[];
}

function sentBy(event: HistoryEvent): Omit<Sent, 'eventId'> | undefined {
  const signaled = event.workflowExecutionSignaledEventAttributes;
  if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED && signaled)
    return {
      kind: 'signal',
      name: signaled.signalName ?? '',
      identity: signaled.identity || null,
      payloads: signaled.input?.payloads ?? [],
    };
  const accepted = event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest;
  if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED && accepted)
    return {
      kind: 'update',
      name: accepted.input?.name ?? '',
      identity: accepted.meta?.identity || null,
      payloads: accepted.input?.args?.payloads ?? [],
    };
  const started = event.workflowExecutionStartedEventAttributes;
  if (event.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED && started)
    return {
      kind: 'start',
      name: started.workflowType?.name ?? '',
      identity: started.identity || null,
      payloads: started.input?.payloads ?? [],
    };
  return undefined;
}

/**
 * The audit of messages a workflow dropped because the codec refused them (workflows/
 * refused-messages.ts). The workflow knows what it dropped but not who sent it: the sender's
 * Temporal identity is in the history, on the event whose payload the codec refuses.
 */
export function createRefusedMessageActivities({ client, catalog, codecs }: RefusedMessageDeps) {
  const undecodable = async (payloads: Payload[]): Promise<boolean> => {
    try {
      for (const codec of [...codecs].reverse()) payloads = await codec.decode(payloads);
      return false;
    } catch {
      return true;
    }
  };

  /** The history's messages after `afterEventId` that the codec refuses, oldest first. */
  const refusedInHistory = async (input: AuditRefusedInput): Promise<Sent[]> => {
    const found: Sent[] = [];
    let nextPageToken: Uint8Array | undefined;
    do {
      const page = await client.workflowService.getWorkflowExecutionHistory({
        namespace: client.options.namespace,
        execution: { workflowId: input.workflowId, runId: input.runId },
        ...(nextPageToken ? { nextPageToken } : {}),
      });
      for (const event of page.history?.events ?? []) {
        const eventId = Number(event.eventId);
        if (eventId <= input.afterEventId) continue;
        const sent = sentBy(event);
        if (sent && (await undecodable(sent.payloads))) found.push({ eventId, ...sent });
      }
      nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
    } while (nextPageToken);
    return found;
  };

  return {
    /** One audit line per dropped message, with its sender where the history names one; returns the last event matched. */
    async auditRefusedMessages(input: AuditRefusedInput): Promise<{ matchedThrough: number }> {
      const candidates = await refusedInHistory(input);
      const activity = asyncLocalStorage.getStore()?.info.activityId ?? 'activity';
      let matchedThrough = input.afterEventId;
      for (const [index, message] of input.refused.entries()) {
        const at = candidates.findIndex((sent) => sent.kind === message.kind && sent.name === message.name);
        const sent = at >= 0 ? candidates.splice(at, 1)[0] : undefined;
        if (sent) matchedThrough = Math.max(matchedThrough, sent.eventId);
        const sender = sent?.identity ? `sent by Temporal identity "${sent.identity}"` : 'sender unknown';
        await catalog.audit({
          // A retry writes the same lines again, in place.
          source: sent
            ? `${input.workflowId}/${input.runId}/event/${sent.eventId}`
            : `${input.workflowId}/${input.runId}/${activity}/${index}`,
          at: message.at,
          action: 'refused_message',
          target: input.workflowId,
          actor: sent?.identity ?? null,
          role: null,
          credentialId: null,
          allowed: false,
          detail: `${message.kind} ${message.name} dropped: its payload was refused (${message.reason}); ${sender}`,
        });
      }
      return { matchedThrough };
    },
  };
}
