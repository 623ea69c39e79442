import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { RunArtifact } from '../domain/experiment.js';
import { MODEL_ARTIFACT_ENV, parseStoredArtifactReference } from '../domain/promotion.js';
import { PRIVATE_DIR_MODE, PRIVATE_FILE } from '../security/files.js';
import { claimFence, type AttemptWriter } from '../store/fence.js';
import { isStoreError, StoreError, type FleetStore } from '../store/store.js';

export const MANIFEST_NAME = 'expctl-manifest.json';

async function sha256(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function walk(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  const files: string[] = [];
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await walk(full)));
    else if (entry.isFile() && entry.name !== MANIFEST_NAME) files.push(full);
  }
  return files.sort();
}

/**
 * Lists what a run wrote to its artifact directory (path, size, sha256) and writes a manifest
 * beside the files naming the experiment, commit and config, so a file found later leads back.
 * `scrub` cleans the names the list and the manifest hold (a run may name a file after a secret).
 */
export async function writeArtifactManifest(
  dir: string,
  origin: { experimentId: string; commit: string; tag: string; configPath: string | null },
  scrub: (text: string) => string = (text) => text,
): Promise<{ path: string; sha256: string; bytes: number }[]> {
  const artifacts = [];
  for (const file of await walk(dir)) {
    artifacts.push({
      path: scrub(path.relative(dir, file)),
      sha256: await sha256(file),
      bytes: (await fs.stat(file)).size,
    });
  }
  origin = { ...origin, configPath: origin.configPath === null ? null : scrub(origin.configPath) };
  if (artifacts.length > 0)
    await fs.writeFile(
      path.join(dir, MANIFEST_NAME),
      `${JSON.stringify({ ...origin, artifacts }, null, 2)}\n`,
      PRIVATE_FILE,
    );
  return artifacts;
}

/** How long a run's uploads keep trying an unreachable store before the run completes without them. */
export const ARTIFACT_UPLOAD_BUDGET_MS = 60_000;
const FIRST_RETRY_MS = 500;
const LONGEST_RETRY_MS = 8000;

/** The attempt's artifact list in the store: `runs/<id>/attempts/<n>/artifacts`. */
export const ARTIFACTS_DOCUMENT = 'artifacts';

export interface ArtifactsDocument {
  experimentId: string;
  attempt: number;
  uploadedAt: string;
  artifacts: Required<RunArtifact>[];
}

/**
 * Calls `step` until it succeeds or the budget is spent, waiting longer each time (0.5 s doubling
 * to 8 s). A write refused by the fence is never retried: the attempt is no longer current.
 */
export async function withStoreRetry<T>(step: () => Promise<T>, deadline: number): Promise<T> {
  for (let wait = FIRST_RETRY_MS; ; wait = Math.min(wait * 2, LONGEST_RETRY_MS)) {
    try {
      return await step();
    } catch (error) {
      if (isStoreError(error, 'fenced') || Date.now() + wait > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

/**
 * Uploads each file of a run's artifact directory to the fleet store through the attempt's writer
 * (an object already there is not written again) and writes the attempt's artifact list. Returns
 * the list with each uploaded file's store URI, and what could not be uploaded, named. The run's
 * outcome never waits longer than `budgetMs` for an unreachable store.
 */
export async function uploadArtifacts(options: {
  dir: string;
  artifacts: RunArtifact[];
  store: FleetStore;
  writer: AttemptWriter;
  budgetMs?: number;
}): Promise<{ artifacts: RunArtifact[]; problems: string[] }> {
  const { dir, store, writer } = options;
  if (options.artifacts.length === 0) return { artifacts: [], problems: [] };
  const deadline = Date.now() + (options.budgetMs ?? ARTIFACT_UPLOAD_BUDGET_MS);
  const uris = new Map<string, string>();
  let failure: unknown;
  try {
    // The attempt takes the run's fence if nobody later holds it: a stale attempt uploads nothing.
    await withStoreRetry(() => claimFence(store, writer.token), deadline);
    for (const file of await walk(dir)) {
      const stored = await withStoreRetry(() => writer.putFile(file), deadline);
      uris.set(stored.sha256, stored.uri);
    }
  } catch (error) {
    failure = error;
  }
  const artifacts = options.artifacts.map((a) => (uris.has(a.sha256) ? { ...a, uri: uris.get(a.sha256)! } : a));
  const uploaded = artifacts.filter((a): a is Required<RunArtifact> => a.uri !== undefined);
  if (failure === undefined) {
    const document: ArtifactsDocument = {
      experimentId: writer.token.experimentId,
      attempt: writer.token.attempt,
      uploadedAt: new Date().toISOString(),
      artifacts: uploaded,
    };
    await withStoreRetry(() => writer.putAttemptDocument(ARTIFACTS_DOCUMENT, document), deadline).catch(
      (error: unknown) => (failure = error),
    );
  }
  const missing = artifacts.length - uploaded.length;
  if (failure === undefined && missing === 0) return { artifacts, problems: [] };
  return { artifacts, problems: [uploadProblem(failure, missing, artifacts.length)] };
}

/** One named problem for what the store lacks of a run's artifacts. */
function uploadProblem(failure: unknown, missing: number, total: number): string {
  const count = missing === 0 ? 'the artifact list' : `${missing} of ${total} artifact uploads`;
  if (isStoreError(failure, 'fenced')) return `artifacts not uploaded (${count} missing): ${failure.message}`;
  if (failure === undefined) return `${count} missing: changed while they were uploaded`;
  return `store unreachable: ${count} missing (${(failure as Error).message})`;
}

/**
 * A holdout evaluation's model, named in its request as a stored object (see promotion.ts): fetched
 * from the fleet store into the run's directory, verified by its sha256, and given to the script as
 * that local file. A request that names no stored model gets nothing. Throws the store's `missing`
 * or `corrupt` when the object cannot be had as recorded.
 */
export async function fetchModelArtifact(
  env: Readonly<Record<string, string>>,
  runDir: string,
  store: FleetStore | undefined,
): Promise<Record<string, string>> {
  const stored = parseStoredArtifactReference(env[MODEL_ARTIFACT_ENV]);
  if (!stored) return {};
  if (!store) throw new StoreError('missing', 'this worker has no fleet store to fetch the model from');
  const target = path.join(runDir, 'model', path.basename(stored.path));
  await fs.mkdir(path.dirname(target), { recursive: true, mode: PRIVATE_DIR_MODE });
  await store.getFile(stored.sha256, target);
  return { [MODEL_ARTIFACT_ENV]: target };
}
