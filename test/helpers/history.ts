import type { Client } from '@temporalio/client';
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import { ENCRYPTED_ENCODING } from '../../src/security/codec.js';

const { GetWorkflowExecutionHistoryResponse } = proto.temporal.api.workflowservice.v1;
export type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

/** A history as the server stores and serves it: raw gRPC, no data converter, no codec. */
export async function rawHistory(
  client: Client,
  namespace: string,
  workflowId: string,
): Promise<{ bytes: Buffer; events: HistoryEvent[] }> {
  const chunks: Buffer[] = [];
  const events: HistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const response = await client.workflowService.getWorkflowExecutionHistory({
      namespace,
      execution: { workflowId },
      nextPageToken,
    });
    chunks.push(Buffer.from(GetWorkflowExecutionHistoryResponse.encode(response).finish()));
    events.push(...(response.history?.events ?? []));
    nextPageToken = response.nextPageToken?.length ? response.nextPageToken : undefined;
  } while (nextPageToken);
  return { bytes: Buffer.concat(chunks), events };
}

/** Every payload in `value` (a history's events), wherever it sits: inputs, results, failures, markers, memos, headers. */
function payloadsIn(value: unknown): Payload[] {
  if (value === null || typeof value !== 'object' || ArrayBuffer.isView(value)) return [];
  const record = value as Record<string, unknown>;
  const metadata = record.metadata as Record<string, unknown> | undefined;
  if (metadata && typeof metadata === 'object' && metadata.encoding instanceof Uint8Array) return [record as Payload];
  return Object.values(record).flatMap(payloadsIn);
}

/**
 * A history as the holder of the payload keyring reads it (`temporal workflow show` through the
 * codec endpoint): every payload of every event decoded with `codec`, each as its metadata and data
 * bytes together; payloads the codec does not encrypt are given as they are.
 */
export async function decodedHistory(events: HistoryEvent[], codec: PayloadCodec): Promise<Buffer[]> {
  const payloads = payloadsIn(events);
  const decoded = await Promise.all(
    payloads.map(async (payload) =>
      Buffer.from(payload.metadata!.encoding!).toString() === ENCRYPTED_ENCODING
        ? (await codec.decode([payload]))[0]!
        : payload,
    ),
  );
  return decoded.map((payload) =>
    Buffer.concat([
      ...Object.entries(payload.metadata ?? {}).flatMap(([key, value]) => [Buffer.from(key), Buffer.from(value ?? [])]),
      Buffer.from(payload.data ?? []),
    ]),
  );
}
