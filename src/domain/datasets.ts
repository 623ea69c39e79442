import { SHARD_UPLOAD_CHUNK_BYTES, shardSizeProblem } from './bounds.js';
import { EXIT_CODES } from './exit-codes.js';

/**
 * Datasets as series of immutable versions, each a set of N shards with content hashes. Pure:
 * workflows, activities and the CLI import it.
 */

/** A dataset's name: letters, digits, "_", ".", "-" (it is part of workflow ids and store paths). */
export const DATASET_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;
export const DATASET_NAME_TEXT = '1-100 letters, digits, "_", "." or "-", starting with a letter or digit';

/** How long a version waits for its missing shards after its first shard arrived: one hour. */
export const DEFAULT_LATENESS_MS = 60 * 60 * 1000;
/** What happens to a shard that arrives after its version sealed: `next` (the next version) or `refuse`. */
export const LATE_POLICIES = ['next', 'refuse'] as const;
export type LatePolicy = (typeof LATE_POLICIES)[number];
export const DEFAULT_LATE_POLICY: LatePolicy = 'next';

export interface DatasetPolicy {
  latenessMs: number;
  latePolicy: LatePolicy;
}

export const SHA256_PATTERN = /^[0-9a-f]{64}$/;

/** Field name → type. JSONL: JSON types ("string", "number", "boolean", "object", "array", "null", or "a|b"); CSV/TSV: "string". */
export type Schema = Record<string, string>;

/** One shard as a producer offers it (`expctl data add`, `expctl data watch`). */
export interface ShardOffer {
  dataset: string;
  /** The version it belongs to; absent: the dataset's open version (or a new one). */
  version?: number;
  shardIndex: number;
  shardCount: number;
  /** The bytes the producer sent (`shardUploadWorkflow`); the orchestrator opens no path a client names. */
  upload: ShardUpload;
  /** The file's base name, a label only (it picks the format: `.jsonl`, `.csv`, `.parquet`, ...). */
  fileName: string;
  /** The hash the producer declares (`--sha256`, a `FILE.sha256` sidecar, or what `data add` computed). */
  declaredSha256: string;
  /** The record count the producer declares (`--records`), if any. */
  declaredRecords?: number;
  /** Lateness allowance for the version this shard opens (`data add --lateness`); else the dataset's. */
  latenessMs?: number;
}

/** A shard's bytes as the producer uploaded them: the signed offer binds them by size and sha256. */
export interface ShardUpload {
  /** The upload's id (UPLOAD_ID_PATTERN): it names a file in the orchestrator's own spool, never a path. */
  id: string;
  sha256: string;
  bytes: number;
}

/** An upload's id: 32 lowercase hex digits, random on the producer's side. */
export const UPLOAD_ID_PATTERN = /^[0-9a-f]{32}$/;

/** A shard upload's workflow: takes the bytes in chunks into the orchestrator's spool. */
export function shardUploadWorkflowId(dataset: string, id: string): string {
  return `expctl-upload-${dataset}-${id}`;
}

/** Where an upload's bytes wait for their shard's offer: `<dataDir>/uploads/<id>`. */
export function uploadSpoolPath(dataDir: string, id: string): string {
  if (!UPLOAD_ID_PATTERN.test(id)) throw new Error(`not an upload id: ${JSON.stringify(id)}`);
  return `${dataDir.replace(/\/+$/, '')}/uploads/${id}`;
}

/** What an upload is for: its dataset, its id (the spool file's name) and its size, fixed at the start. */
export interface ShardUploadStart {
  dataset: string;
  id: string;
  bytes: number;
}

/** Why this chunk is refused, or null: chunks come in order, each at most SHARD_UPLOAD_CHUNK_BYTES, never past the size. */
export function uploadChunkProblem(
  start: ShardUploadStart,
  received: number,
  offset: number,
  data: unknown,
): string | null {
  // isView, not instanceof: a payload's bytes may come from outside the workflow's sandbox.
  if (!ArrayBuffer.isView(data) || (data as Uint8Array).BYTES_PER_ELEMENT !== 1) return 'a chunk is bytes';
  if (offset !== received) return `the next chunk starts at byte ${received}, not ${offset}`;
  if (data.byteLength > SHARD_UPLOAD_CHUNK_BYTES) return `a chunk has at most ${SHARD_UPLOAD_CHUNK_BYTES} bytes`;
  if (data.byteLength === 0 && start.bytes > 0) return 'a chunk has at least 1 byte';
  if (offset + data.byteLength > start.bytes)
    return `the upload declared ${start.bytes} bytes; this chunk goes past them`;
  return null;
}

/** How long an upload waits for its next chunk (or for its shard's offer) before its bytes are discarded. */
export const UPLOAD_IDLE_MS = 15 * 60 * 1000;

/** The rule a request naming a path breaks (its refusal names it). */
export const NO_CLIENT_PATHS_RULE =
  "the orchestrator never opens a path a client names: a shard's bytes come from the producer's side (expctl data add reads the file and uploads it)";

/** The file-name label of an offer: a base name, no directories. */
const FILE_NAME_PATTERN = /^[^/\\\0]{1,255}$/;

/**
 * Why a shard offer is refused before anything is recorded, or null. Its `code` is a refusal
 * code (SHARD_NAMES_PATH, SHARD_UPLOAD_INVALID): an offer that names a path is refused whatever else it holds.
 */
export function shardOfferProblem(offer: unknown): { code: string; message: string } | null {
  const o = (typeof offer === 'object' && offer !== null ? offer : {}) as Record<string, unknown>;
  if ('path' in o || 'file' in o)
    return {
      code: SHARD_NAMES_PATH,
      message: `${SHARD_NAMES_PATH}: this request names a path (${JSON.stringify(String(o.path ?? o.file).slice(0, 200))}); ${NO_CLIENT_PATHS_RULE}`,
    };
  const invalid = (what: string) => ({ code: SHARD_UPLOAD_INVALID, message: `${SHARD_UPLOAD_INVALID}: ${what}` });
  const upload = (typeof o.upload === 'object' && o.upload !== null ? o.upload : null) as Record<
    string,
    unknown
  > | null;
  if (!upload) return invalid(`the offer carries no upload; ${NO_CLIENT_PATHS_RULE}`);
  if (typeof upload.id !== 'string' || !UPLOAD_ID_PATTERN.test(upload.id))
    return invalid('the upload id must be 32 lowercase hex digits (it names no path)');
  if (typeof upload.sha256 !== 'string' || !SHA256_PATTERN.test(upload.sha256))
    return invalid("the upload's sha256 must be 64 lowercase hex digits");
  const size =
    typeof upload.bytes === 'number' ? shardSizeProblem(upload.bytes) : 'a shard size is a whole number of bytes';
  if (size) return invalid(size);
  if (typeof o.fileName !== 'string' || !FILE_NAME_PATTERN.test(o.fileName))
    return invalid('fileName must be a base name of 1-255 characters, without "/"');
  return null;
}

/** What the store made of a shard's bytes. */
export interface IngestedShard {
  sha256: string;
  bytes: number;
  format: 'jsonl' | 'csv' | 'tsv' | 'parquet' | 'bytes';
  records: number | null;
  schema: Schema | null;
}

/** A shard as its version holds it. */
export interface ShardEntry extends IngestedShard {
  index: number;
  count: number;
  declaredSha256: string;
  declaredRecords: number | null;
  fileName: string;
  arrivedAt: string;
}

/** How a delivery was taken. */
export type ShardOutcome =
  /** New in its version. */
  | 'accepted'
  /** The same content for a shard that had already arrived: counted once. */
  | 'duplicate'
  /** Arrived after its version sealed; taken into the next version (late policy `next`). */
  | 'late_next';

export interface AddShardResult {
  dataset: string;
  outcome: ShardOutcome;
  /** The version that holds the shard now. */
  version: number;
  /** For late shards: the sealed version it was late for. */
  lateFor: number | null;
  shardIndex: number;
  shardCount: number;
  sha256: string;
  records: number | null;
  /** Whether this delivery completed (and so sealed) the version. */
  sealed: boolean;
}

/** Refusal codes of `data add` (Temporal failure type and CLI JSON `error`). */
export const SHARD_CONFLICT = 'shard.conflict';
export const SHARD_COUNT_MISMATCH = 'shard.count_mismatch';
export const LATE_REFUSED = 'late.refused';
export const VERSION_UNKNOWN = 'version.unknown';
/** The offer names a path: refused before anything is recorded (NO_CLIENT_PATHS_RULE). */
export const SHARD_NAMES_PATH = 'shard.names_path';
/** The offer's upload is malformed or over MAX_SHARD_BYTES. */
export const SHARD_UPLOAD_INVALID = 'shard.upload_invalid';
/** The spool does not hold the bytes the signed offer declares (missing, another size or sha256). */
export const SHARD_UPLOAD_MISMATCH = 'shard.upload_mismatch';
/** A refusal of a shard (not permission_denied): exit code 2, like a refused experiment. */
export const DATA_REFUSAL_EXIT_CODE = EXIT_CODES.validation_failed;

export const SEAL_REASONS = ['complete', 'lateness'] as const;
export type SealReason = (typeof SEAL_REASONS)[number];

export function datasetWorkflowId(dataset: string): string {
  return `expctl-dataset-${dataset}`;
}

export function datasetVersionWorkflowId(dataset: string, version: number): string {
  return `expctl-dataset-${dataset}-v${version}`;
}

/** `expctl-dataset-NAME-vV` back to its parts, or null. */
export function parseDatasetVersionWorkflowId(id: string): { dataset: string; version: number } | null {
  const match = /^expctl-dataset-(.+)-v(\d+)$/.exec(id);
  if (!match || !DATASET_NAME_PATTERN.test(match[1]!)) return null;
  return { dataset: match[1]!, version: Number(match[2]) };
}

/** Where the content-addressed store keeps an object: `<dataDir>/objects/<sha256>`. */
export function shardObjectPath(dataDir: string, sha256: string): string {
  if (!SHA256_PATTERN.test(sha256)) throw new Error(`not a sha256 hex digest: ${JSON.stringify(sha256)}`);
  return `${dataDir.replace(/\/+$/, '')}/objects/${sha256}`;
}

/**
 * The `data watch` naming convention: `NAME-SHARD-of-COUNT.EXT` (as Hugging Face and TensorFlow
 * name shards: `train-00003-of-00008.jsonl`), SHARD counted from 0. Null for other names.
 */
export function parseShardFileName(
  fileName: string,
): { dataset: string; shardIndex: number; shardCount: number } | null {
  const match = /^(.+)-(\d+)-of-(\d+)(\.[A-Za-z0-9]+)*$/.exec(fileName);
  if (!match) return null;
  const shardIndex = Number(match[2]);
  const shardCount = Number(match[3]);
  if (!DATASET_NAME_PATTERN.test(match[1]!) || shardCount < 1 || shardIndex >= shardCount) return null;
  return { dataset: match[1]!, shardIndex, shardCount };
}

/** Files a producer is still writing or that are not shards: `*.tmp`, `*.part`, dotfiles, `*.sha256` sidecars. */
export function isIgnoredFileName(fileName: string): boolean {
  return (
    fileName.startsWith('.') || /\.(tmp|part|partial|crdownload|sha256)$/i.test(fileName) || fileName.endsWith('~')
  );
}

/** A version as the dataset's workflow tracks it. */
export interface VersionState {
  version: number;
  expectedShards: number;
  /** Shard index → content sha256. */
  shards: Record<string, string>;
  status: 'open' | 'sealed' | 'passed' | 'failed';
  openedAt: string;
  latenessMs: number;
  sealedAt: string | null;
  sealReason: SealReason | null;
}

/** The dataset workflow's state (its query answers with it; continue-as-new carries it). */
export interface DatasetState {
  dataset: string;
  policy: DatasetPolicy;
  /** The number the next new version gets. */
  nextVersion: number;
  /** Open versions and the most recent sealed ones (older ones are in the catalog only). */
  versions: VersionState[];
  /** Deliveries taken so far, duplicates and late ones included. */
  deliveries: number;
}

/** How many sealed versions the workflow keeps in its state (to recognise redeliveries of their shards). */
export const KEPT_SEALED_VERSIONS = 20;

export function newDatasetState(dataset: string, policy: Partial<DatasetPolicy> = {}): DatasetState {
  return {
    dataset,
    policy: { latenessMs: DEFAULT_LATENESS_MS, latePolicy: DEFAULT_LATE_POLICY, ...policy },
    nextVersion: 1,
    versions: [],
    deliveries: 0,
  };
}

/** What a version workflow reports back, and what its query answers. */
export interface VersionOutcome {
  dataset: string;
  version: number;
  status: 'open' | 'sealed' | 'passed' | 'failed';
  sealReason: SealReason | null;
  gates: { gate: string; passed: boolean; code: string | null; message: string }[];
}
