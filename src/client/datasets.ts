import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { WithStartWorkflowOperation, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import {
  datasetWorkflowId,
  newDatasetState,
  SHA256_PATTERN,
  type AddShardResult,
  type DatasetPolicy,
  type DatasetState,
  type ShardOffer,
  type ShardUpload,
  type ShardUploadStart,
  datasetVersionWorkflowId,
  shardUploadWorkflowId,
} from '../domain/datasets.js';
import { SHARD_UPLOAD_CHUNK_BYTES, shardSizeProblem } from '../domain/bounds.js';
import type { Credential } from '../security/credentials.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { addShardUpdate, configureDatasetUpdate } from '../workflows/definitions.js';
import { datasetWorkflow } from '../workflows/dataset.js';
import type { datasetVersionWorkflow } from '../workflows/dataset-version.js';
import { finishUploadSignal, shardUploadWorkflow, uploadChunkUpdate } from '../workflows/shard-upload.js';
import { signAs } from './sign.js';

/** The sha256 of a file, computed on the producer's side. */
export async function fileSha256(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The hash in a `FILE.sha256` sidecar (`sha256sum` format or the bare hex), or null when there is none. */
export async function sidecarSha256(file: string): Promise<string | null> {
  let text: string;
  try {
    text = await fs.readFile(`${file}.sha256`, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const hex = text.trim().split(/\s+/)[0]?.toLowerCase() ?? '';
  if (!SHA256_PATTERN.test(hex)) throw new Error(`${file}.sha256 does not start with a sha256 hex digest`);
  return hex;
}

/** What a producer declares: `--sha256`, else the sidecar, else the hash computed here. */
export async function declaredSha256(file: string, given?: string): Promise<string> {
  if (given !== undefined) return given.toLowerCase();
  return (await sidecarSha256(file)) ?? (await fileSha256(file));
}

/** A refusal of a shard (shard.conflict, late.refused, ...): its code and message, else null. */
export function shardRefusal(error: unknown): { code: string; message: string } | null {
  // Through the update's failure and, for an ingest refusal (shard.upload_mismatch), the activity's.
  for (let cause: unknown = error, depth = 0; cause instanceof Error && depth < 4; cause = cause.cause, depth++) {
    if (cause instanceof ApplicationFailure && cause.type && /^(shard|late|version)\./.test(cause.type))
      return { code: cause.type, message: cause.message };
  }
  return null;
}

/**
 * Sends a file's bytes, read here as the invoking user, into the orchestrator's spool in chunks
 * (`shardUploadWorkflow`): the upload's id, size and the sha256 of exactly the bytes sent.
 */
export async function uploadShard(
  client: Client,
  dataset: string,
  file: string,
  credential?: Credential,
): Promise<ShardUpload> {
  const handle = await fs.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const tooLarge = shardSizeProblem(size);
    if (tooLarge) throw new Error(`${file}: ${tooLarge}`);
    const id = crypto.randomBytes(16).toString('hex');
    const workflowId = shardUploadWorkflowId(dataset, id);
    const start: ShardUploadStart = { dataset, id, bytes: size };
    const hash = crypto.createHash('sha256');
    let offset = 0;
    do {
      const chunk = Buffer.alloc(Math.min(SHARD_UPLOAD_CHUNK_BYTES, size - offset));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, offset);
      if (bytesRead < chunk.length) throw new Error(`${file} shrank while it was uploaded; offer it again`);
      hash.update(chunk);
      // The update id makes a retried chunk count once.
      const options = { args: [offset, chunk] as [number, Uint8Array], updateId: `chunk-${offset}` };
      if (offset === 0)
        await client.workflow.executeUpdateWithStart(uploadChunkUpdate, {
          ...options,
          startWorkflowOperation: new WithStartWorkflowOperation(shardUploadWorkflow, {
            workflowId,
            taskQueue: CONTROL_TASK_QUEUE,
            args: [start, signAs('add_data', workflowId, start, credential)],
            workflowIdConflictPolicy: 'FAIL',
          }),
        });
      else await client.workflow.getHandle(workflowId).executeUpdate(uploadChunkUpdate, options);
      offset += chunk.length;
    } while (offset < size);
    return { id, sha256: hash.digest('hex'), bytes: size };
  } finally {
    await handle.close();
  }
}

/**
 * Offers one shard to its dataset's workflow (update-with-start: the first shard creates it): its
 * bytes go first (`uploadShard`), then the offer signed with their sha256. The orchestrator never
 * opens `file`: it is read here.
 */
export async function addShard(
  client: Client,
  input: Omit<ShardOffer, 'fileName' | 'upload'> & { file: string },
  credential?: Credential,
): Promise<AddShardResult> {
  const { file, ...rest } = input;
  const upload = await uploadShard(client, rest.dataset, file, credential);
  const offer: ShardOffer = { ...rest, upload, fileName: path.basename(file) };
  const workflowId = datasetWorkflowId(offer.dataset);
  try {
    return await client.workflow.executeUpdateWithStart(addShardUpdate, {
      args: [offer, signAs('add_data', workflowId, offer, credential)],
      startWorkflowOperation: new WithStartWorkflowOperation(datasetWorkflow, {
        workflowId,
        taskQueue: CONTROL_TASK_QUEUE,
        args: [offer.dataset, newDatasetState(offer.dataset)],
        workflowIdConflictPolicy: 'USE_EXISTING',
      }),
    });
  } finally {
    // Taken or refused, the upload is done: its spool file (if the offer did not take it) goes now.
    await client.workflow
      .getHandle(shardUploadWorkflowId(offer.dataset, upload.id))
      .signal(finishUploadSignal)
      .catch(() => undefined);
  }
}

/** Sets a dataset's lateness allowance or late policy (creates the dataset if new). */
export async function configureDataset(
  client: Client,
  dataset: string,
  policy: Partial<DatasetPolicy>,
  credential?: Credential,
): Promise<DatasetState> {
  const workflowId = datasetWorkflowId(dataset);
  return client.workflow.executeUpdateWithStart(configureDatasetUpdate, {
    args: [policy, signAs('configure_dataset', workflowId, policy, credential)],
    startWorkflowOperation: new WithStartWorkflowOperation(datasetWorkflow, {
      workflowId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [dataset, newDatasetState(dataset)],
      workflowIdConflictPolicy: 'USE_EXISTING',
    }),
  });
}

/** Waits for a dataset version to be decided (sealed, gates run) and returns how it went. */
export async function datasetVersionOutcome(client: Client, dataset: string, version: number) {
  return client.workflow.getHandle<typeof datasetVersionWorkflow>(datasetVersionWorkflowId(dataset, version)).result();
}
