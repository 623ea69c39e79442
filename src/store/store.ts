/**
 * The fleet store: what runs produce (artifacts, checkpoints, logs, patches), kept where every host
 * can reach it. Objects are content-addressed (sha256), written atomically and verified on read;
 * documents are small JSON files under slash-separated names (manifests, fences), replaced whole.
 * Two backends implement it: the local filesystem (the default) and any S3-compatible bucket.
 */

/** An object as the store holds it. */
export interface StoredObject {
  sha256: string;
  bytes: number;
  /** Where it lives, for the record: `file:///…/objects/ab/abcd…` or `s3://bucket/prefix/objects/ab/abcd…`. */
  uri: string;
}

/** One object of a listing (for usage and garbage collection). */
export interface ObjectEntry {
  sha256: string;
  bytes: number;
  modifiedAt: Date;
}

/** One document of a listing. */
export interface DocumentEntry {
  name: string;
  modifiedAt: Date;
}

export interface FleetStore {
  /** The store's own address: `file:///abs/dir` or `s3://bucket/prefix`. */
  readonly location: string;
  /** The address of an object, whether or not it is there. */
  objectUri(sha256: string): string;
  /** Stores a file's bytes under their sha256; an object already there is not written again. */
  putFile(file: string): Promise<StoredObject>;
  putBytes(bytes: Uint8Array): Promise<StoredObject>;
  /**
   * Writes an object to `target` (through a temporary file renamed into place), refusing it with
   * `corrupt` when its bytes do not hash to its name; `missing` when it is not there.
   */
  getFile(sha256: string, target: string): Promise<StoredObject>;
  getBytes(sha256: string): Promise<Buffer>;
  hasObject(sha256: string): Promise<boolean>;
  listObjects(): AsyncIterable<ObjectEntry>;
  deleteObject(sha256: string): Promise<void>;
  /** Replaces a document whole (readers see the old or the new one, never a part). */
  putDocument(name: string, value: unknown): Promise<void>;
  getDocument<T = unknown>(name: string): Promise<T | null>;
  /** Documents whose names start with `prefix`, with when each was last written. */
  listDocuments(prefix: string): Promise<DocumentEntry[]>;
  deleteDocument(name: string): Promise<void>;
}

/**
 * What can go wrong, named: `missing` (no such object), `corrupt` (its bytes hash to something
 * else), `fenced` (a write by an attempt that is no longer current), `unreachable` (the backend
 * did not answer), `quota` (more than a run may keep).
 */
export type StoreErrorCode = 'missing' | 'corrupt' | 'fenced' | 'unreachable' | 'quota';

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export function isStoreError(error: unknown, code?: StoreErrorCode): error is StoreError {
  return error instanceof StoreError && (code === undefined || error.code === code);
}

const SHA256 = /^[0-9a-f]{64}$/;

/** Refuses anything that is not a sha256 before it becomes part of a path or key. */
export function checkSha256(sha256: string): string {
  if (!SHA256.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256).slice(0, 80)}`);
  return sha256;
}

/** Where an object lives under the store's root: objects/ab/abcd… (two levels keep listings short). */
export function objectKey(sha256: string): string {
  return `objects/${checkSha256(sha256).slice(0, 2)}/${sha256}`;
}

const DOCUMENT_NAME = /^[A-Za-z0-9_.:@-]+(\/[A-Za-z0-9_.:@-]+)*$/;

/** Refuses a document name that could leave the documents' root (`..`, absolute, odd characters). */
export function checkDocumentName(name: string): string {
  if (!DOCUMENT_NAME.test(name) || name.split('/').some((part) => part === '.' || part === '..'))
    throw new Error(`not a store document name: ${JSON.stringify(name).slice(0, 120)}`);
  return name;
}

/** Where a document lives under the store's root. */
export function documentKey(name: string): string {
  return `documents/${checkDocumentName(name)}.json`;
}
