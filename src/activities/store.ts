import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { READ_LOG_PAGE_BYTES } from '../domain/limits.js';
import { scrubText } from '../domain/redact.js';
import type { ShippedLogDocument } from '../gpu-worker/log-shipping.js';
import { attemptDocument, runDocument } from '../store/fence.js';
import type { FleetStore } from '../store/store.js';
import type { CatalogReader } from '../catalog/catalog.js';
import { recordReferences, retained, runRetention } from '../catalog/retention.js';
import { runDocuments } from '../store/references.js';

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
  /** The record: which runs are kept, live or a model version's, and the objects it names. */
  catalog: CatalogReader;
}

/** What `expctl store gc` asks for. */
export interface StoreGcInput {
  /** Objects and finished runs younger than this stay (ms). */
  olderThanMs: number;
  /** Say what would go; delete nothing. */
  dryRun: boolean;
}

/** What a collection removed (or, with dryRun, would remove). */
export interface StoreGcReport {
  store: string;
  dryRun: boolean;
  olderThanMs: number;
  cutoff: string;
  /** Finished runs, neither kept nor a model version's, that ended before the cutoff: their documents go. */
  runsCollected: string[];
  runsRetained: number;
  documentsDeleted: number;
  objectsDeleted: number;
  bytesDeleted: number;
  objectsKept: number;
  bytesKept: number;
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

    /**
     * Retention: removes the documents of finished runs that are neither kept nor a model version's
     * and ended before the cutoff, then every object older than the cutoff that nothing left refers
     * to (a retained run's documents, the record's patches and artifacts of retained runs, model
     * versions). A live run's documents name its newest checkpoint only, so older ones go. A run the
     * record does not know is left alone.
     */
    async collectStoreGarbage(input: StoreGcInput): Promise<StoreGcReport> {
      const cutoff = new Date(Date.now() - input.olderThanMs);
      const runs = await runDocuments(store);
      const record = await runRetention(deps.catalog.sql);
      const retainedRuns = new Set<string>();
      for (const [experimentId, run] of record) if (retained(run, cutoff)) retainedRuns.add(experimentId);
      const collected = [...runs.keys()].filter((id) => record.has(id) && !retainedRuns.has(id)).sort();
      const referenced = await recordReferences(deps.catalog.sql, retainedRuns);
      for (const [experimentId, documents] of runs)
        if (!collected.includes(experimentId))
          for (const document of documents) for (const sha256 of document.sha256s) referenced.add(sha256);
      const report: StoreGcReport = {
        store: store.location,
        dryRun: input.dryRun,
        olderThanMs: input.olderThanMs,
        cutoff: cutoff.toISOString(),
        runsCollected: collected,
        runsRetained: runs.size - collected.length,
        documentsDeleted: 0,
        objectsDeleted: 0,
        bytesDeleted: 0,
        objectsKept: 0,
        bytesKept: 0,
      };
      for (const experimentId of collected)
        for (const document of runs.get(experimentId)!) {
          if (!input.dryRun) await store.deleteDocument(document.name);
          report.documentsDeleted++;
        }
      for await (const object of store.listObjects()) {
        Context.current().heartbeat();
        if (referenced.has(object.sha256) || object.modifiedAt.getTime() > cutoff.getTime()) {
          report.objectsKept++;
          report.bytesKept += object.bytes;
          continue;
        }
        if (!input.dryRun) await store.deleteObject(object.sha256);
        report.objectsDeleted++;
        report.bytesDeleted += object.bytes;
      }
      return report;
    },
  };
}
