import fs from 'node:fs/promises';
import path from 'node:path';
import {
  planCheckpointSync,
  skippedText,
  type CheckpointDocument,
  type CheckpointFile,
  type ScannedFile,
  type SkippedCheckpoint,
} from '../domain/checkpoints.js';
import type { CheckpointOutcome } from '../domain/experiment.js';
import { attemptWriter, claimFence, type AttemptWriter, type FenceToken } from '../store/fence.js';
import { isStoreError, type FleetStore } from '../store/store.js';

/** The document name of an attempt's checkpoint (runs/<exp>/attempts/<n>/checkpoint). */
export const CHECKPOINT_DOCUMENT = 'checkpoint';

/** Backoff after a failed sync: doubles from the interval, up to this. */
const MAX_BACKOFF_MS = 60_000;
/** At exit the store gets a few more tries, backing off from the interval (the run's outcome waits for them). */
const FINAL_TRIES = 3;

export interface CheckpointSyncOptions {
  /** The run's EXPCTL_CHECKPOINT_DIR. */
  dir: string;
  store: FleetStore;
  token: FenceToken;
  /** The run's log: the sync's `expctl:` lines go there. */
  log: string;
  intervalMs: number;
  quotaBytes: number;
  /** The run's training seconds at `atMs`, earlier attempts included. */
  trainingSeconds(atMs: number): number;
}

/** Every regular file under `dir`, with paths relative to it ('/'-separated); symlinks are not followed. */
export async function scanCheckpointDir(dir: string): Promise<ScannedFile[]> {
  const found: ScannedFile[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await fs.readdir(path.join(dir, relative), { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const name = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(name);
      else if (entry.isFile()) {
        const stats = await fs.lstat(path.join(dir, name)).catch(() => undefined);
        if (stats?.isFile()) found.push({ path: name, bytes: stats.size, mtimeMs: stats.mtimeMs });
      }
    }
  };
  await walk('');
  return found;
}

/**
 * Syncs a run's checkpoint directory to the fleet store while the run goes: complete files only,
 * newest first, within the quota, at most every `intervalMs`, and once more at exit (`finish`).
 * Every write goes through the attempt's writer, so a fenced attempt (a later one holds the run)
 * stops syncing; an unreachable store is retried with backoff and named in the outcome.
 */
export class CheckpointSync {
  private readonly writer: AttemptWriter;
  private previous: ScannedFile[] = [];
  /** Files already in the store, by path, as they were when uploaded. */
  private readonly uploaded = new Map<string, ScannedFile & { sha256: string }>();
  private written: string | undefined;
  private synced: CheckpointOutcome['synced'] = null;
  private skipped: SkippedCheckpoint[] = [];
  private readonly reported = new Set<string>();
  private stopped: string | undefined;
  private claimed = false;
  private failures = 0;
  private retryAt = 0;
  private outage: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  /** When the training process ended: the sync at exit counts training time up to then. */
  private endedAtMs = Infinity;

  constructor(private readonly options: CheckpointSyncOptions) {
    this.writer = attemptWriter(options.store, options.token);
  }

  /** Records the claim made at the attempt's start; an attempt whose claim was refused never syncs. */
  claimResult(result: { claimed: true } | { fenced: string } | { unreachable: string }): this {
    if ('claimed' in result) this.claimed = true;
    if ('fenced' in result) this.stopped = result.fenced;
    return this;
  }

  start(): this {
    this.timer = setInterval(() => {
      if (this.inFlight) return;
      this.inFlight = this.syncOnce(false).finally(() => (this.inFlight = undefined));
    }, this.options.intervalMs);
    return this;
  }

  /** The last sync, at exit (a few tries), then what the outcome records; undefined when the run never checkpointed. */
  async finish(endedAtMs = Date.now()): Promise<{ checkpoint?: CheckpointOutcome; storeProblems: string[] }> {
    clearInterval(this.timer);
    this.endedAtMs = endedAtMs;
    await this.inFlight;
    for (let tries = 1; !this.stopped; tries++) {
      this.retryAt = 0;
      if (await this.syncOnce(true).then(() => this.outage === undefined)) break;
      if (tries === FINAL_TRIES) break;
      await new Promise((resolve) => setTimeout(resolve, this.options.intervalMs * 2 ** tries));
    }
    const storeProblems = this.outage
      ? [
          `store unreachable: the checkpoint of attempt ${this.options.token.attempt} was not synced at exit (${this.outage})` +
            (this.synced ? `; the store holds the one synced ${this.synced.syncedAt}` : '; none is in the store'),
        ]
      : [];
    storeProblems.push(...this.skipped.map((skipped) => skippedText(skipped, this.options.quotaBytes)));
    const touched =
      this.synced !== null || this.skipped.length > 0 || this.outage !== undefined || this.stopped !== undefined;
    const checkpoint: CheckpointOutcome | undefined = touched
      ? { synced: this.synced, skipped: this.skipped, ...(this.stopped ? { stopped: this.stopped } : {}) }
      : undefined;
    return { ...(checkpoint ? { checkpoint } : {}), storeProblems };
  }

  /** One scan and sync; failures are kept for the outcome and retried later, never thrown. */
  async syncOnce(final: boolean): Promise<void> {
    if (this.stopped || Date.now() < this.retryAt) return;
    const scan = await scanCheckpointDir(this.options.dir);
    const plan = planCheckpointSync(scan, this.previous, this.options.quotaBytes, final, Date.now());
    this.previous = scan;
    await this.reportSkipped(plan.skipped);
    if (plan.sync.length === 0 && this.written === undefined) return;
    try {
      if (!this.claimed) {
        await claimFence(this.options.store, this.options.token);
        this.claimed = true;
      }
      const files: CheckpointFile[] = [];
      for (const file of plan.sync) files.push(await this.upload(file));
      await this.writeDocument(files, plan.skipped, newestWrite(plan.sync));
      if (this.outage !== undefined) await this.say(`checkpoint sync: the store answers again`);
      this.failures = 0;
      this.outage = undefined;
    } catch (error) {
      await this.failed(error as Error);
    }
  }

  private async upload(file: ScannedFile): Promise<CheckpointFile> {
    const known = this.uploaded.get(file.path);
    if (known && known.bytes === file.bytes && known.mtimeMs === file.mtimeMs)
      return { path: file.path, sha256: known.sha256, bytes: known.bytes };
    const stored = await this.writer.putFile(path.join(this.options.dir, file.path));
    this.uploaded.set(file.path, { ...file, sha256: stored.sha256 });
    return { path: file.path, sha256: stored.sha256, bytes: stored.bytes };
  }

  /** The attempt's document, written when its files changed: readers restore exactly this set. */
  private async writeDocument(
    files: CheckpointFile[],
    skipped: SkippedCheckpoint[],
    writtenAtMs: number,
  ): Promise<void> {
    const key = JSON.stringify({ files, skipped });
    this.skipped = skipped;
    if (key === this.written) return;
    const document: CheckpointDocument = {
      attempt: this.options.token.attempt,
      syncedAt: new Date().toISOString(),
      // What the checkpoint holds is the training up to when its newest file was written, not up to the sync.
      trainingSeconds:
        Math.round(this.options.trainingSeconds(Math.min(writtenAtMs, Date.now(), this.endedAtMs)) * 10) / 10,
      files,
      skipped,
    };
    await this.writer.putAttemptDocument(CHECKPOINT_DOCUMENT, document);
    this.written = key;
    this.synced = {
      files: files.length,
      bytes: files.reduce((sum, file) => sum + file.bytes, 0),
      syncedAt: document.syncedAt,
    };
  }

  private async failed(error: Error): Promise<void> {
    if (isStoreError(error, 'fenced')) {
      this.stopped = error.message;
      await this.say(`checkpoint sync stopped: ${error.message}`);
      return;
    }
    this.failures++;
    const backoff = Math.min(MAX_BACKOFF_MS, this.options.intervalMs * 2 ** this.failures);
    this.retryAt = Date.now() + backoff;
    if (this.outage === undefined)
      await this.say(
        `checkpoint sync: the store ${this.options.store.location} failed (${error.message}); retrying with backoff`,
      );
    this.outage = error.message;
  }

  /** Each skipped file is said once in the log (the outcome lists them all). */
  private async reportSkipped(skipped: SkippedCheckpoint[]): Promise<void> {
    for (const file of skipped) {
      const key = `${file.path}\0${file.bytes}\0${file.reason}`;
      if (this.reported.has(key)) continue;
      this.reported.add(key);
      await this.say(skippedText(file, this.options.quotaBytes));
    }
  }

  private async say(line: string): Promise<void> {
    await fs.appendFile(this.options.log, `expctl: ${line}\n`).catch(() => undefined);
  }
}

/** How long the claim at an attempt's start may keep the run from starting; the sync claims later. */
const CLAIM_WAIT_MS = 30_000;

/** Claims the run's fence for this attempt; never throws (a run trains whatever the store says). */
export async function claimAttempt(
  store: FleetStore,
  token: FenceToken,
  waitMs = CLAIM_WAIT_MS,
): Promise<{ claimed: true } | { fenced: string } | { unreachable: string }> {
  let timer: NodeJS.Timeout | undefined;
  const noAnswer = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${waitMs / 1000} s`)), waitMs);
  });
  try {
    await Promise.race([claimFence(store, token), noAnswer]);
    return { claimed: true };
  } catch (error) {
    if (isStoreError(error, 'fenced')) return { fenced: (error as Error).message };
    return { unreachable: (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** When the newest of the synced files was written (now, for an empty set). */
function newestWrite(files: readonly ScannedFile[]): number {
  return files.length === 0 ? Date.now() : Math.max(...files.map((file) => file.mtimeMs));
}
