import type { DocumentEntry, FleetStore } from './store.js';

/**
 * What the store's documents refer to: each run's documents (`runs/<experimentId>/…`) name objects
 * by sha256 (a checkpoint's files, a log's chunks, the artifact list, the patch). Usage (`expctl
 * store du`) and retention (`expctl store gc`) both read the store through these.
 */

const SHA256 = /^[0-9a-f]{64}$/;

/** Every sha256 a document names: the value of any key that ends in `sha256`, at any depth. */
export function sha256sIn(value: unknown, found: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) for (const item of value) sha256sIn(item, found);
  else if (value !== null && typeof value === 'object')
    for (const [key, inner] of Object.entries(value)) {
      if (/sha256$/i.test(key) && typeof inner === 'string' && SHA256.test(inner)) found.add(inner);
      else sha256sIn(inner, found);
    }
  return found;
}

/** What an object is, by the document that names it; `unreferenced` when none does. */
export const OBJECT_KINDS = ['checkpoints', 'logs', 'artifacts', 'patches', 'other', 'unreferenced'] as const;
export type ObjectKind = (typeof OBJECT_KINDS)[number];

/** A document's kind by its last name segment: …/checkpoint, …/log, …/artifacts, …/patch. */
export function documentKind(name: string): Exclude<ObjectKind, 'unreferenced'> {
  const last = name.slice(name.lastIndexOf('/') + 1);
  if (last.startsWith('checkpoint')) return 'checkpoints';
  if (last === 'log') return 'logs';
  if (last.startsWith('artifact')) return 'artifacts';
  if (last.startsWith('patch')) return 'patches';
  return 'other';
}

export interface RunDocument extends DocumentEntry {
  kind: Exclude<ObjectKind, 'unreferenced'>;
  sha256s: Set<string>;
}

/** Every run's documents with what each names, by experiment. */
export async function runDocuments(store: FleetStore): Promise<Map<string, RunDocument[]>> {
  const runs = new Map<string, RunDocument[]>();
  for (const entry of await store.listDocuments('runs/')) {
    const experimentId = entry.name.split('/')[1];
    if (!experimentId) continue;
    const value = await store.getDocument(entry.name);
    const documents = runs.get(experimentId) ?? [];
    documents.push({ ...entry, kind: documentKind(entry.name), sha256s: sha256sIn(value) });
    runs.set(experimentId, documents);
  }
  return runs;
}

export interface KindUsage {
  objects: number;
  bytes: number;
}

export interface StoreUsage {
  store: string;
  objects: number;
  bytes: number;
  /** Objects by the kind of the first document that names them (checkpoints before logs, …). */
  byKind: Record<ObjectKind, KindUsage>;
  runs: number;
  documents: number;
}

/** The store's usage: every object once, counted under the kind of what names it. */
export async function storeUsage(store: FleetStore): Promise<StoreUsage> {
  const runs = await runDocuments(store);
  const kindOf = new Map<string, ObjectKind>();
  let documents = 0;
  for (const list of runs.values())
    for (const document of list) {
      documents++;
      for (const sha256 of document.sha256s) {
        const known = kindOf.get(sha256);
        if (!known || OBJECT_KINDS.indexOf(document.kind) < OBJECT_KINDS.indexOf(known))
          kindOf.set(sha256, document.kind);
      }
    }
  const byKind = Object.fromEntries(OBJECT_KINDS.map((kind) => [kind, { objects: 0, bytes: 0 }])) as Record<
    ObjectKind,
    KindUsage
  >;
  const usage: StoreUsage = { store: store.location, objects: 0, bytes: 0, byKind, runs: runs.size, documents };
  for await (const object of store.listObjects()) {
    const kind = byKind[kindOf.get(object.sha256) ?? 'unreferenced'];
    kind.objects++;
    kind.bytes += object.bytes;
    usage.objects++;
    usage.bytes += object.bytes;
  }
  return usage;
}
