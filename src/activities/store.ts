import { ApplicationFailure } from '@temporalio/common';
import { READ_LOG_PAGE_BYTES } from '../domain/limits.js';
import { scrubText } from '../domain/redact.js';
import type { ShippedLogDocument } from '../gpu-worker/log-shipping.js';
import { attemptDocument, runDocument } from '../store/fence.js';
import type { FleetStore } from '../store/store.js';

/** One attempt's log as shipped to the fleet store (what `expctl logs` reads when its host is gone). */
export interface StoredLog {
  attempt: number;
  host: string;
  bytes: number;
  complete: boolean;
  updatedAt: string;
}

export interface StoreDeps {
  store: FleetStore;
}

const ATTEMPT_LOG = /^runs\/[^/]+\/attempts\/(\d+)\/log$/;

/** `bytes` up to its last whole UTF-8 character (when more follows, the next page starts with the cut one). */
function wholeCharacters(bytes: Buffer): Buffer {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const byte = bytes[bytes.length - back]!;
    if ((byte & 0xc0) === 0x80) continue;
    const need = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return need > back ? bytes.subarray(0, bytes.length - back) : bytes;
  }
  return bytes;
}

/** Activities on the orchestrator that read the fleet store for readers on any host (and collect it). */
export function createStoreActivities(deps: StoreDeps) {
  const { store } = deps;
  return {
    /** Every attempt of an experiment whose log was shipped to the store, first attempt first. */
    async storedLogs(experimentId: string): Promise<StoredLog[]> {
      const found: StoredLog[] = [];
      for (const entry of await store.listDocuments(runDocument(experimentId, 'attempts/'))) {
        if (!ATTEMPT_LOG.test(entry.name)) continue;
        const document = await store.getDocument<ShippedLogDocument>(entry.name);
        if (!document) continue;
        found.push({
          attempt: document.attempt,
          host: document.host,
          bytes: document.bytes,
          complete: document.complete,
          updatedAt: document.updatedAt,
        });
      }
      return found.sort((a, b) => a.attempt - b.attempt);
    },

    /**
     * One page of an attempt's shipped log: at most READ_LOG_PAGE_BYTES from `offset`, ending at a
     * line's end where a line fits and never inside a UTF-8 character. Each chunk is verified by its
     * hash as it is read (a corrupt one is refused); the text was scrubbed of the run's secret values
     * before it left its host, and is scrubbed here of whatever looks like a credential.
     */
    async readStoredLog(
      experimentId: string,
      attempt: number,
      offset: number,
      maxBytes: number,
    ): Promise<{ text: string; nextOffset: number; size: number }> {
      const document = await store.getDocument<ShippedLogDocument>(attemptDocument(experimentId, attempt, 'log'));
      if (!document)
        throw ApplicationFailure.nonRetryable(
          `the fleet store has no shipped log of ${experimentId} attempt ${attempt}`,
        );
      const size = document.bytes;
      const start = Math.min(Math.max(0, Math.floor(offset) || 0), size);
      const end = Math.min(size, start + Math.max(0, Math.min(Math.floor(maxBytes) || 0, READ_LOG_PAGE_BYTES)));
      const parts: Buffer[] = [];
      for (const chunk of document.chunks) {
        if (chunk.offset + chunk.bytes <= start || chunk.offset >= end) continue;
        const bytes = await store.getBytes(chunk.sha256);
        parts.push(bytes.subarray(Math.max(0, start - chunk.offset), Math.min(chunk.bytes, end - chunk.offset)));
      }
      let page: Buffer = Buffer.concat(parts);
      if (start + page.length < size) {
        const newline = page.lastIndexOf(0x0a);
        page = newline >= 0 ? page.subarray(0, newline + 1) : wholeCharacters(page);
      }
      return { text: scrubText(page.toString('utf8')), nextOffset: start + page.length, size };
    },
  };
}
