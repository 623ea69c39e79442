import type { StoreLocation } from './location.js';
import type { DocumentEntry, FleetStore, ObjectEntry, StoredObject } from './store.js';

/** Placeholder until the S3 backend lands: every call says so. */
export class S3Store implements FleetStore {
  readonly location: string;
  constructor(location: Extract<StoreLocation, { kind: 's3' }>, _env: NodeJS.ProcessEnv) {
    this.location = `s3://${location.bucket}/${location.prefix}`;
  }
  private no(): never {
    throw new Error('the S3 store is not built yet');
  }
  objectUri(): string {
    return this.no();
  }
  putFile(): Promise<StoredObject> {
    return this.no();
  }
  putBytes(): Promise<StoredObject> {
    return this.no();
  }
  getFile(): Promise<StoredObject> {
    return this.no();
  }
  getBytes(): Promise<Buffer> {
    return this.no();
  }
  hasObject(): Promise<boolean> {
    return this.no();
  }
  // eslint-disable-next-line require-yield
  async *listObjects(): AsyncIterable<ObjectEntry> {
    this.no();
  }
  deleteObject(): Promise<void> {
    return this.no();
  }
  putDocument(): Promise<void> {
    return this.no();
  }
  getDocument<T>(): Promise<T | null> {
    return this.no();
  }
  listDocuments(): Promise<DocumentEntry[]> {
    return this.no();
  }
  deleteDocument(): Promise<void> {
    return this.no();
  }
}
