import fs from 'node:fs/promises';
import path from 'node:path';
import { CheckpointDocumentSchema, restoreCandidates, type CheckpointDocument } from '../domain/checkpoints.js';
import type { CheckpointRestore } from '../domain/experiment.js';
import { PRIVATE_DIR_MODE } from '../security/files.js';
import { attemptDocument, runDocument } from '../store/fence.js';
import type { FleetStore } from '../store/store.js';
import { CHECKPOINT_DOCUMENT } from './checkpoint-sync.js';

/** The attempts of `experimentId` that synced a checkpoint, as the store lists their documents. */
export async function attemptsWithCheckpoint(store: FleetStore, experimentId: string): Promise<number[]> {
  const prefix = runDocument(experimentId, 'attempts/');
  const names = await store.listDocuments(prefix);
  return names.flatMap(({ name }) => {
    const match = /^(\d+)\/checkpoint$/.exec(name.slice(prefix.length));
    return match ? [Number(match[1])] : [];
  });
}

/** Empties the run's checkpoint directory (a failed restore leaves nothing half there). */
export async function emptyCheckpointDir(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
}

/** One attempt's checkpoint: its document checked, then each file fetched (and verified by its hash) into `dir`. */
async function restoreAttempt(
  store: FleetStore,
  experimentId: string,
  attempt: number,
  dir: string,
): Promise<CheckpointDocument> {
  const raw = await store.getDocument(attemptDocument(experimentId, attempt, CHECKPOINT_DOCUMENT));
  if (raw === null) throw new Error(`attempt ${attempt} has no checkpoint document`);
  const parsed = CheckpointDocumentSchema.safeParse(raw);
  if (!parsed.success)
    throw new Error(
      `its checkpoint document is malformed: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  for (const file of parsed.data.files) {
    const target = path.join(dir, ...file.path.split('/'));
    await fs.mkdir(path.dirname(target), { recursive: true, mode: PRIVATE_DIR_MODE });
    await store.getFile(file.sha256, target);
  }
  return parsed.data;
}

export interface RestoreRequest {
  store: FleetStore;
  /** The experiment whose checkpoint is restored (this run's, or another's for `--checkpoint store:ID`). */
  experimentId: string;
  /** Only attempts below this one are candidates (Infinity: any attempt). */
  below: number;
  dir: string;
  /** Says each failed candidate (a log line). */
  say(line: string): Promise<void>;
}

/**
 * Restores the latest complete checkpoint into `dir`: the highest earlier attempt with a checkpoint
 * document, else the one before it, and so on. A candidate that fails (a missing or corrupt object,
 * a malformed document) is said and the next is tried; when none restores, `dir` is left empty.
 */
export async function restoreLatestCheckpoint(request: RestoreRequest): Promise<CheckpointRestore> {
  const { store, experimentId, dir } = request;
  const started = Date.now();
  let candidates: number[];
  try {
    candidates = restoreCandidates(request.below, await attemptsWithCheckpoint(store, experimentId));
  } catch (error) {
    await emptyCheckpointDir(dir);
    return {
      restored: false,
      reason: `the store could not list the checkpoints of ${experimentId}: ${(error as Error).message}`,
    };
  }
  if (candidates.length === 0)
    return { restored: false, reason: `no attempt of ${experimentId} has a synced checkpoint in the store` };
  const failures: string[] = [];
  for (const attempt of candidates) {
    await emptyCheckpointDir(dir);
    try {
      const document = await restoreAttempt(store, experimentId, attempt, dir);
      return {
        restored: true,
        experimentId,
        attempt,
        syncedAt: document.syncedAt,
        trainingSeconds: document.trainingSeconds,
        files: document.files.length,
        bytes: document.files.reduce((sum, file) => sum + file.bytes, 0),
        seconds: Math.round((Date.now() - started) / 100) / 10,
      };
    } catch (error) {
      const failure = `the checkpoint of attempt ${attempt} did not restore: ${(error as Error).message}`;
      failures.push(failure);
      await request.say(failure);
    }
  }
  await emptyCheckpointDir(dir);
  return { restored: false, reason: failures.join('; ') };
}
