import type { Client } from '@temporalio/client';
import type { EnvironmentRecord } from '../catalog/record.js';

/** The train steps whose heartbeats carry the leased host's environment record. */
const TRAIN_STEPS = ['runTraining', 'awaitTraining'];

/**
 * The environment a run's leased host recorded, read from the last heartbeat of its pending train
 * step (heartbeats write no history: the record gets it with the outcome). Null when no train
 * step is pending or its heartbeat has none yet.
 */
export async function trainingEnvironment(client: Client, experimentId: string): Promise<EnvironmentRecord | null> {
  const description = await client.workflow.getHandle(experimentId).describe();
  const training = description.raw.pendingActivities?.find((activity) =>
    TRAIN_STEPS.includes(activity.activityType?.name ?? ''),
  );
  const payload = training?.heartbeatDetails?.payloads?.[0];
  if (!payload) return null;
  const converter = client.options.loadedDataConverter;
  let decoded = [payload];
  // Codecs encode in order, so they decode in reverse.
  for (const codec of [...converter.payloadCodecs].reverse()) decoded = await codec.decode(decoded);
  const heartbeat = converter.payloadConverter.fromPayload<{ environment?: EnvironmentRecord }>(decoded[0]!);
  return typeof heartbeat?.environment?.host === 'string' ? heartbeat.environment : null;
}
