/**
 * Checkpoints a run writes to EXPCTL_CHECKPOINT_DIR, as rules: which files are complete and synced
 * (newest first, within the run's quota), which earlier attempt a resumed run restores from, and
 * the forms a script and a request see. Pure: the worker's sync loop and restore, the request
 * schema and the guides read them from here.
 */
import { z } from 'zod';
import { formatBytes } from './bounds.js';

/** A file found in a run's checkpoint directory (path relative to it, '/'-separated). */
export interface ScannedFile {
  path: string;
  bytes: number;
  mtimeMs: number;
}

/** A checkpoint file as the store holds it. */
export interface CheckpointFile {
  path: string;
  sha256: string;
  bytes: number;
}

/** A file the sync left out, and why (`over_quota`: larger than the whole quota; `quota_full`: newer files used it). */
export interface SkippedCheckpoint {
  path: string;
  bytes: number;
  reason: 'over_quota' | 'quota_full';
}

/** The store document `runs/<exp>/attempts/<n>/checkpoint`: the attempt's latest synced checkpoint. */
export interface CheckpointDocument {
  attempt: number;
  /** When this set of files was complete in the store. */
  syncedAt: string;
  /** Training seconds of the run when its newest file was written, earlier attempts included. */
  trainingSeconds: number;
  files: CheckpointFile[];
  skipped: SkippedCheckpoint[];
}

/**
 * A file still being written is not a checkpoint: dotfiles (in any folder) and `*.tmp` / `*.partial`
 * are the script's work in progress (the contract is "write, then rename into place").
 */
export function isCheckpointCandidate(relativePath: string): boolean {
  const parts = relativePath.split('/');
  if (parts.some((part) => part.startsWith('.') || part === '')) return false;
  return !/\.(tmp|partial)$/i.test(relativePath);
}

/** What one sync takes: complete files, newest first, within the quota; and what it leaves out. */
export interface CheckpointSyncPlan {
  sync: ScannedFile[];
  skipped: SkippedCheckpoint[];
}

/**
 * A file not written for this long is taken as complete at once: a file renamed into place keeps
 * the time its writing ended. (One written in place, against the contract, may be caught between
 * two writes further apart than this; it is synced again once it changes.)
 */
export const CHECKPOINT_SETTLE_MS = 2000;

/**
 * Chooses what to sync. A file is complete when it was last written CHECKPOINT_SETTLE_MS before
 * `nowMs`, or the previous scan saw it with the same size and mtime (a file still growing is left
 * for a later sync), or, at exit (`final`), always: nothing can write it any more. Newest files
 * come first; each is kept while the kept bytes fit `quotaBytes`.
 */
export function planCheckpointSync(
  current: readonly ScannedFile[],
  previous: readonly ScannedFile[],
  quotaBytes: number,
  final: boolean,
  nowMs = -Infinity,
): CheckpointSyncPlan {
  const before = new Map(previous.map((file) => [file.path, file]));
  const complete = current.filter((file) => {
    if (!isCheckpointCandidate(file.path)) return false;
    if (final || nowMs - file.mtimeMs >= CHECKPOINT_SETTLE_MS) return true;
    const seen = before.get(file.path);
    return seen !== undefined && seen.bytes === file.bytes && seen.mtimeMs === file.mtimeMs;
  });
  const newestFirst = [...complete].sort((a, b) => b.mtimeMs - a.mtimeMs || a.path.localeCompare(b.path));
  const sync: ScannedFile[] = [];
  const skipped: SkippedCheckpoint[] = [];
  let kept = 0;
  for (const file of newestFirst) {
    if (file.bytes > quotaBytes) skipped.push({ path: file.path, bytes: file.bytes, reason: 'over_quota' });
    else if (kept + file.bytes > quotaBytes) skipped.push({ path: file.path, bytes: file.bytes, reason: 'quota_full' });
    else {
      sync.push(file);
      kept += file.bytes;
    }
  }
  return { sync, skipped };
}

/** The sentence a skipped file gets in the run's log and the record's store problems. */
export function skippedText(skipped: SkippedCheckpoint, quotaBytes: number): string {
  return skipped.reason === 'over_quota'
    ? `checkpoint ${skipped.path} (${formatBytes(skipped.bytes)}) over the run's quota ${formatBytes(quotaBytes)}: skipped`
    : `checkpoint ${skipped.path} (${formatBytes(skipped.bytes)}) does not fit the run's quota ${formatBytes(quotaBytes)} beside newer files: skipped`;
}

/** The earlier attempts a resumed attempt may restore from, the latest first (`withCheckpoint`: attempts that synced one). */
export function restoreCandidates(attempt: number, withCheckpoint: readonly number[]): number[] {
  return [...new Set(withCheckpoint)].filter((n) => n < attempt).sort((a, b) => b - a);
}

/**
 * EXPCTL_RESUMED_FROM: `ATTEMPT@SYNCED_AT`, e.g. `1@2026-12-07T05:31:02.123Z`. A shell splits it
 * with `${EXPCTL_RESUMED_FROM%%@*}` and `${EXPCTL_RESUMED_FROM#*@}`, Python with `.split("@", 1)`.
 * A checkpoint of another experiment (`--checkpoint store:ID`) is `ID:ATTEMPT@SYNCED_AT`.
 */
export function resumedFromValue(attempt: number, syncedAt: string, experimentId?: string): string {
  return `${experimentId ? `${experimentId}:` : ''}${attempt}@${syncedAt}`;
}

/** `--checkpoint store:EXPERIMENT_ID`: another run's latest synced checkpoint, from the fleet store. */
export const STORE_CHECKPOINT_PREFIX = 'store:';
const EXPERIMENT_ID = /^[A-Za-z0-9_.-]{1,200}$/;

/** The experiment a `store:ID` checkpoint names, or null when the reference is a path. */
export function storeCheckpointSource(reference: string): string | null {
  return reference.startsWith(STORE_CHECKPOINT_PREFIX) ? reference.slice(STORE_CHECKPOINT_PREFIX.length) : null;
}

/** Why a `store:ID` checkpoint reference is malformed, or null (a path reference is checked as a path). */
export function storeCheckpointProblem(reference: string): string | null {
  const experimentId = storeCheckpointSource(reference);
  if (experimentId === null) return null;
  if (!EXPERIMENT_ID.test(experimentId) || experimentId === '.' || experimentId === '..')
    return `${JSON.stringify(reference)} must be store:EXPERIMENT_ID, an experiment ID of letters, digits, "_", "." or "-" (e.g. store:exp-base-20261207-053102-a1b2c3)`;
  return null;
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?$/;
const UNIT_BYTES: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };

/** EXPCTL_CHECKPOINT_QUOTA: bytes, or a number with KiB, MiB, GiB or TiB (`20GiB`); throws a clear error otherwise. */
export function parseCheckpointQuota(text: string): number {
  const match = SIZE.exec(text.trim());
  const bytes = match ? Math.floor(Number(match[1]) * UNIT_BYTES[match[2] ?? 'B']!) : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1)
    throw new Error(
      `EXPCTL_CHECKPOINT_QUOTA must be a size such as 20GiB, 512MiB or a number of bytes (at least 1), not ${JSON.stringify(text)}`,
    );
  return bytes;
}

/** A checkpoint document as read back from the store (another host wrote it): checked before any file is fetched. */
export const CheckpointDocumentSchema = z.object({
  attempt: z.number().int().min(1),
  syncedAt: z.string().min(1),
  trainingSeconds: z.number().min(0),
  files: z.array(
    z.object({
      path: z.string().min(1).max(1000).refine(confinedCheckpointPath, 'a path inside the checkpoint directory'),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      bytes: z.number().int().min(0),
    }),
  ),
  skipped: z.array(z.object({ path: z.string(), bytes: z.number(), reason: z.enum(['over_quota', 'quota_full']) })),
});

/** A path a restore may write: relative, inside the directory, no "..", no control characters. */
export function confinedCheckpointPath(relativePath: string): boolean {
  if (relativePath.startsWith('/') || /[\u0000-\u001f\u007f\\]/.test(relativePath)) return false;
  return isCheckpointCandidate(relativePath) && !relativePath.split('/').includes('..');
}
