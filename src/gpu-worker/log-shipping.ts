import fs from 'node:fs/promises';
import type { TrainingOutcome } from '../domain/experiment.js';
import { secretForms } from '../domain/redact.js';
import { attemptDocument, attemptWriter, claimFence, type FenceToken } from '../store/fence.js';
import { isStoreError, type FleetStore } from '../store/store.js';
import { createStreamScrubber } from './stream-scrub.mjs';

/**
 * Logs that outlive their host: while a run goes, its raw log is shipped to the fleet store in
 * chunks (each one object), and the attempt's `log` document lists them in order. Secret values
 * are scrubbed before a byte leaves the host, by a streaming scrubber, so a value split across two
 * chunks is still replaced. A write refused by the fence (a later attempt holds the run) stops the
 * shipping; a store that does not answer is retried with backoff, and what never arrived is said.
 */

/** One shipped piece of the scrubbed log: where it starts in the shipped stream, its size and object. */
export interface LogChunk {
  offset: number;
  bytes: number;
  sha256: string;
}

/** The attempt's `log` document: `runs/<exp>/attempts/<n>/log`. */
export interface ShippedLogDocument {
  experimentId: string;
  attempt: number;
  host: string;
  chunks: LogChunk[];
  /** Bytes of the shipped (scrubbed) log: the sum of the chunks. */
  bytes: number;
  /** Bytes of the raw log on the host read so far (a restarted worker continues from here). */
  sourceBytes: number;
  /** The run ended and everything it wrote was shipped. */
  complete: boolean;
  updatedAt: string;
}

/** Where the record says the shipped log is (TrainingOutcome.log). */
export type ShippedLogRef = NonNullable<TrainingOutcome['log']>;

export interface LogShipperOptions {
  store: FleetStore;
  token: FenceToken;
  host: string;
  logFile: string;
  /** Where this attempt's part of the log starts (an earlier attempt on this host wrote before it). */
  startOffset?: number;
  /** The run's secret values (scrubbed in every form they take in text). */
  secretValues: readonly string[];
  /** How often the log is shipped while the run goes (default 5 s). */
  intervalMs?: number;
  /** The longest wait between tries while the store does not answer (default 60 s). */
  maxBackoffMs?: number;
  /** How many tries the final ship gets before it gives up (default 4). */
  finalTries?: number;
}

/** The most one chunk holds: a long silence followed by a burst ships in several pieces. */
export const LOG_CHUNK_MAX_BYTES = 4 * 1024 * 1024;
export const DEFAULT_LOG_SHIP_INTERVAL_MS = 5000;

export const logDocumentName = 'log';

export interface LogShipper {
  /** Ships every few seconds until finish(). */
  start(): void;
  /** Ships the rest once more (with a few tries), marks the log complete, stops. */
  finish(): Promise<{ log?: ShippedLogRef; storeProblems: string[] }>;
}

export function createLogShipper(options: LogShipperOptions): LogShipper {
  const { store, token, logFile } = options;
  const intervalMs = options.intervalMs ?? DEFAULT_LOG_SHIP_INTERVAL_MS;
  const maxBackoffMs = options.maxBackoffMs ?? 60_000;
  const writer = attemptWriter(store, token);
  const documentName = attemptDocument(token.experimentId, token.attempt, logDocumentName);
  const scrubber = createStreamScrubber(secretForms(options.secretValues));
  const document: ShippedLogDocument = {
    experimentId: token.experimentId,
    attempt: token.attempt,
    host: options.host,
    chunks: [],
    bytes: 0,
    sourceBytes: options.startOffset ?? 0,
    complete: false,
    updatedAt: new Date().toISOString(),
  };
  /** Scrubbed bytes read from the log and not yet in the store. */
  let pending: Buffer[] = [];
  let claimed = false;
  let fencedBy: string | undefined;
  let lastError: string | undefined;
  let failures = 0;
  let timer: NodeJS.Timeout | undefined;
  let shipping: Promise<void> = Promise.resolve();
  let stopped = false;
  let resumed = false;
  let released = false;

  /** A restarted worker continues the attempt's document rather than shipping the log twice. */
  const resume = async () => {
    if (resumed) return;
    const earlier = await store.getDocument<ShippedLogDocument>(documentName);
    resumed = true;
    if (earlier && Array.isArray(earlier.chunks) && earlier.host === options.host)
      Object.assign(document, { chunks: earlier.chunks, bytes: earlier.bytes, sourceBytes: earlier.sourceBytes });
  };

  /** The log's new bytes since the last read, scrubbed (an end that could begin a secret is held back until `final`). */
  const readNew = async (final: boolean) => {
    const handle = await fs.open(logFile, 'r').catch(() => undefined);
    if (handle) {
      try {
        for (;;) {
          const buffer = Buffer.alloc(LOG_CHUNK_MAX_BYTES);
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, document.sourceBytes);
          if (bytesRead === 0) break;
          document.sourceBytes += bytesRead;
          pending.push(scrubber.push(buffer.subarray(0, bytesRead)));
          if (bytesRead < buffer.length) break;
        }
      } finally {
        await handle.close();
      }
    }
    if (final && !released) {
      released = true;
      pending.push(scrubber.end());
    }
  };

  /** Bytes of the log not in the store: pending ones, and those not read yet. */
  const unshipped = async () => {
    const size = await fs.stat(logFile).then(
      (stats) => stats.size,
      () => document.sourceBytes,
    );
    return pending.reduce((sum, part) => sum + part.length, 0) + Math.max(0, size - document.sourceBytes);
  };

  /** Puts what is pending (in pieces of at most LOG_CHUNK_MAX_BYTES) and the document naming it. */
  const putPending = async (final: boolean) => {
    if (!claimed) {
      // Idempotent for the attempt that already claimed; refused (fenced) once a later one has.
      await claimFence(store, token);
      claimed = true;
    }
    let all = Buffer.concat(pending);
    pending = [all];
    while (all.length > 0) {
      const piece = all.subarray(0, LOG_CHUNK_MAX_BYTES);
      const object = await writer.putBytes(piece);
      document.chunks.push({ offset: document.bytes, bytes: piece.length, sha256: object.sha256 });
      document.bytes += piece.length;
      all = all.subarray(piece.length);
      pending = [all];
    }
    pending = [];
    document.complete = final;
    document.updatedAt = new Date().toISOString();
    await writer.putAttemptDocument(logDocumentName, document);
  };

  /** `final`: the run ended; what the scrubber held back goes too, and the log is complete. */
  const shipOnce = async (final: boolean) => {
    if (fencedBy) return;
    try {
      await resume();
      await readNew(final);
      await putPending(final);
      failures = 0;
      lastError = undefined;
    } catch (error) {
      if (isStoreError(error, 'fenced')) {
        fencedBy = (error as Error).message;
        await fs
          .appendFile(logFile, `\nexpctl: the log is no longer shipped to the fleet store: ${fencedBy}\n`)
          .catch(() => undefined);
        return;
      }
      failures++;
      lastError = (error as Error).message;
      throw error;
    }
  };

  /** The next tick: the interval, doubled for each failure in a row up to maxBackoffMs. */
  const schedule = () => {
    if (stopped || fencedBy) return;
    const delay = Math.min(maxBackoffMs, intervalMs * 2 ** Math.min(failures, 16));
    timer = setTimeout(() => {
      shipping = shipOnce(false)
        .catch(() => undefined)
        .finally(schedule);
    }, delay);
  };

  return {
    start() {
      schedule();
    },
    async finish() {
      stopped = true;
      clearTimeout(timer);
      await shipping;
      const tries = options.finalTries ?? 4;
      let delay = Math.min(1000, intervalMs);
      for (let tryNumber = 1; ; tryNumber++) {
        try {
          await shipOnce(true);
          break;
        } catch {
          if (tryNumber >= tries) break;
          await new Promise((resolve) => setTimeout(resolve, delay));
          delay = Math.min(maxBackoffMs, delay * 2);
        }
      }
      const storeProblems: string[] = [];
      if (fencedBy) storeProblems.push(`log shipping stopped, fenced: ${fencedBy}`);
      else if (lastError) {
        const missing = await unshipped();
        storeProblems.push(
          `store unreachable: the log's last ${missing} bytes were not shipped (${lastError}); the whole log stays on ${options.host}`,
        );
      }
      if (!claimed && document.chunks.length === 0) return { storeProblems };
      return {
        log: {
          document: documentName,
          store: store.location,
          bytes: document.bytes,
          chunks: document.chunks.length,
          complete: document.complete && !fencedBy && !lastError,
        },
        storeProblems,
      };
    },
  };
}
