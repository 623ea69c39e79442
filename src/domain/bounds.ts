/**
 * Bounds on every count and size a client controls, in one place. Pure: the request schema, the
 * CLI, the dataset workflow and the worker's validation read them from here, and the README names
 * each one. A value over its bound is refused (exit 2) before anything is recorded: none of them
 * is a limit of the infrastructure that a retry could get past.
 */

/** Tag names (also part of workflow IDs and file names); TAG_PATTERN spells it out. */
export const MAX_TAG_CHARS = 64;
/** Tag names: also part of workflow IDs and file names. Model names and key ids follow the same rule. */
export const TAG_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const TAG_PATTERN_TEXT = 'letters, digits, "_", "." or "-" (at most 64, starting with a letter or digit)';
/** The one message for a malformed tag, wherever a tag is checked. */
export const TAG_RULE = `a tag is ${TAG_PATTERN_TEXT}`;
/** The refusal of a malformed tag, naming where it came from (`tag`, `--tag`, `<tag>`); undefined when well-formed. */
export function tagProblem(tag: string, where = 'tag'): string | undefined {
  return TAG_PATTERN.test(tag) ? undefined : `${where} ${JSON.stringify(tag)}: ${TAG_RULE}`;
}
/** `--hypothesis`: one or two sentences. */
export const MAX_HYPOTHESIS_CHARS = 2000;
/** `--description`. */
export const MAX_DESCRIPTION_CHARS = 2000;
/** One `tag create --guard` expression, e.g. `val_pass==true`. */
export const MAX_GUARD_CHARS = 200;
/** Guards of one tag. */
export const MAX_GUARDS = 32;
/** `tag create --max-crashes`: consecutive crashes before should_abort. */
export const MAX_CONSECUTIVE_CRASHES = 1000;
/** Variables of one run, `--env` and `--secret` together. */
export const MAX_ENV_VARIABLES = 256;
/** One variable's value, in UTF-8 bytes. */
export const MAX_ENV_VALUE_BYTES = 32 * 1024;
/** Every `--env` and `--secret` name and value of one run, in UTF-8 bytes (Linux takes 2 MiB of argv and environment). */
export const MAX_ENV_BYTES = 256 * 1024;
/** Words of the training command, or of `--setup`. */
export const MAX_COMMAND_WORDS = 1024;
/** The training command, or `--setup`, in UTF-8 bytes (its words together). */
export const MAX_COMMAND_BYTES = 64 * 1024;
/** A `--config` file: parsed at validation and kept in the record and in Temporal's history. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** `--dataset` references of one run. */
export const MAX_DATASET_REFS = 64;
/** `--runtime-tag`s of one run, and the characters of each. */
export const MAX_RUNTIME_TAGS = 32;
/** The most GPUs one run may ask for (`--gpus K`): more than any single host carries. */
export const MAX_GPUS_PER_RUN = 64;
/** `--gpus all`: every capable GPU of the host the run is placed on. */
export const GPUS_ALL = 'all';

/** The GPUs a request asks for: a count, or `all` (every capable GPU of the host it is placed on). */
export function gpusOf(requirements: { gpus?: number | typeof GPUS_ALL | undefined }): number | typeof GPUS_ALL {
  return requirements.gpus ?? 1;
}
export const MAX_RUNTIME_TAG_CHARS = 64;
/** Variants (commits) of one `expctl batch`. */
export const MAX_BATCH_VARIANTS = 64;
/** Shards of one dataset version (`data add --shard i/N`): the seal lists every missing index. */
export const MAX_SHARDS_PER_VERSION = 100_000;
/**
 * Bytes of one shard (`data add`, `data watch`): its bytes travel through Temporal's history in
 * chunks, and one upload's history stays under the server's 50 MB limit. Split bigger data into
 * more shards.
 */
export const MAX_SHARD_BYTES = 32 * 1024 * 1024;
/** Bytes of one chunk of a shard upload: encrypted, still under the 512 KiB at which Temporal warns about a payload. */
export const SHARD_UPLOAD_CHUNK_BYTES = 480 * 1024;
/** `--idempotency-key`. */
export const MAX_IDEMPOTENCY_KEY_CHARS = 200;
/** An ID that `show`, `wait`, `logs` and `cancel` take (experiments, batches, promotions, dataset versions). */
export const MAX_ID_CHARS = 255;

/**
 * What every ID expctl makes looks like: ASCII letters, digits, "_", "." and "-", starting with a
 * letter or digit (`exp-TAG-20261206-231500-a1b2c3`, `batch-…`, `expctl-dataset-NAME-v3`).
 */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Why `id` cannot be an ID expctl made, or null when it could be one. The message never repeats the ID (it may be huge or hostile). */
export function malformedIdProblem(id: string): string | null {
  if (id.length === 0) return 'the ID is empty';
  if (id.length > MAX_ID_CHARS) return `the ID has ${id.length} characters; IDs have at most ${MAX_ID_CHARS}`;
  if (!ID_PATTERN.test(id))
    return 'IDs are ASCII letters, digits, "_", "." and "-", starting with a letter or digit (as `expctl run` prints them)';
  return null;
}

/** UTF-8 length of a string, computed without Buffer or TextEncoder (workflow code uses it too). */
export function utf8Bytes(text: string): number {
  let bytes = 0;
  for (const char of text) {
    const code = char.codePointAt(0)!;
    bytes += code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
  }
  return bytes;
}

/** A size as people read it, in binary units: 512 B, 48.0 KiB, 50.0 MiB, 12.0 GiB. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Why a shard position is out of bounds, or null: `count` whole in 1..MAX_SHARDS_PER_VERSION, `index` in 0..count-1. */
export function shardPositionProblem(index: number, count: number): string | null {
  if (count > MAX_SHARDS_PER_VERSION) return `a version holds at most ${MAX_SHARDS_PER_VERSION} shards, not ${count}`;
  if (!Number.isSafeInteger(count) || count < 1) return 'the shard count must be a whole number of at least 1';
  if (!Number.isSafeInteger(index) || index < 0 || index >= count)
    return `the shard index must be a whole number from 0 to ${count - 1}`;
  return null;
}

/** Why a shard of `bytes` cannot be uploaded, or null: a whole number from 0 to MAX_SHARD_BYTES. */
export function shardSizeProblem(bytes: number): string | null {
  if (!Number.isSafeInteger(bytes) || bytes < 0) return 'a shard size is a whole number of bytes';
  if (bytes > MAX_SHARD_BYTES)
    return `the shard has ${formatBytes(bytes)} (${bytes} bytes); a shard has at most ${formatBytes(MAX_SHARD_BYTES)} (MAX_SHARD_BYTES): split it into more shards`;
  return null;
}
