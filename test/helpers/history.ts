import type { Client } from '@temporalio/client';
import proto from '@temporalio/proto';

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
