import crypto from 'node:crypto';
import { constants as fsConstants, createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ensurePrivateDir, PRIVATE_FILE, PRIVATE_FILE_MODE } from '../security/files.js';
import {
  checkSha256,
  documentKey,
  objectKey,
  StoreError,
  type DocumentEntry,
  type FleetStore,
  type ObjectEntry,
  type StoredObject,
} from './store.js';

/** A file's sha256 and size, read in large blocks (the copy it hashes was just written: it is in the page cache). */
async function hashFile(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

const temporaryName = (dir: string) => path.join(dir, `.tmp-${process.pid}-${crypto.randomUUID()}`);

/**
 * The fleet store on a local (or shared) filesystem: `<root>/objects/ab/<sha256>` and
 * `<root>/documents/<name>.json`, private to the user (0700/0600). Every write goes to a temporary
 * file in `<root>/tmp` and is renamed into place, so a reader never sees part of one.
 */
export class FilesystemStore implements FleetStore {
  readonly location: string;
  private readonly tmp: string;

  constructor(readonly root: string) {
    this.root = path.resolve(root);
    this.location = pathToFileURL(this.root).href;
    this.tmp = path.join(this.root, 'tmp');
  }

  objectUri(sha256: string): string {
    return `${this.location}/${objectKey(sha256)}`;
  }

  private objectPath(sha256: string): string {
    return path.join(this.root, objectKey(sha256));
  }

  private async temporary(): Promise<string> {
    await ensurePrivateDir(this.tmp);
    return temporaryName(this.tmp);
  }

  /** Moves a finished temporary file to `target`, or drops it when the same object is already there. */
  private async place(temporary: string, target: string): Promise<void> {
    await ensurePrivateDir(path.dirname(target));
    await fs.rename(temporary, target);
  }

  async putFile(file: string): Promise<StoredObject> {
    // What is stored is what was hashed: the copy is hashed, not the source (which may still change).
    const temporary = await this.temporary();
    try {
      await fs.copyFile(file, temporary);
      await fs.chmod(temporary, PRIVATE_FILE_MODE);
      const { sha256, bytes } = await hashFile(temporary);
      if (await this.hasObject(sha256)) await fs.rm(temporary, { force: true });
      else await this.place(temporary, this.objectPath(sha256));
      return { sha256, bytes, uri: this.objectUri(sha256) };
    } finally {
      await fs.rm(temporary, { force: true });
    }
  }

  async putBytes(bytes: Uint8Array): Promise<StoredObject> {
    const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
    if (!(await this.hasObject(sha256))) {
      const temporary = await this.temporary();
      try {
        await fs.writeFile(temporary, bytes, { ...PRIVATE_FILE, flag: 'wx' });
        await this.place(temporary, this.objectPath(sha256));
      } finally {
        await fs.rm(temporary, { force: true });
      }
    }
    return { sha256, bytes: bytes.byteLength, uri: this.objectUri(sha256) };
  }

  async getFile(sha256: string, target: string): Promise<StoredObject> {
    const temporary = `${target}.expctl-partial-${crypto.randomUUID()}`;
    try {
      await fs.copyFile(this.objectPath(sha256), temporary, fsConstants.COPYFILE_EXCL);
    } catch (error) {
      await fs.rm(temporary, { force: true });
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !(await this.hasObject(sha256)))
        throw new StoreError('missing', `object ${sha256.slice(0, 12)}… is not in the store ${this.location}`);
      throw error;
    }
    // The copy is verified, not the object: what the caller gets is exactly what was hashed.
    const { sha256: actual, bytes } = await hashFile(temporary).catch(async (error: unknown) => {
      await fs.rm(temporary, { force: true });
      throw error;
    });
    if (actual !== sha256) {
      await fs.rm(temporary, { force: true });
      throw corrupt(sha256, actual, this.location);
    }
    await fs.chmod(temporary, PRIVATE_FILE_MODE);
    await fs.rename(temporary, target);
    return { sha256, bytes, uri: this.objectUri(sha256) };
  }

  async getBytes(sha256: string): Promise<Buffer> {
    const bytes = await fs.readFile(this.objectPath(sha256)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT')
        throw new StoreError('missing', `object ${sha256.slice(0, 12)}… is not in the store ${this.location}`);
      throw error;
    });
    const actual = crypto.createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) throw corrupt(sha256, actual, this.location);
    return bytes;
  }

  async hasObject(sha256: string): Promise<boolean> {
    return fs.access(this.objectPath(sha256)).then(
      () => true,
      () => false,
    );
  }

  async *listObjects(): AsyncIterable<ObjectEntry> {
    const objects = path.join(this.root, 'objects');
    for (const shard of await readdirOrEmpty(objects)) {
      for (const name of await readdirOrEmpty(path.join(objects, shard))) {
        if (!/^[0-9a-f]{64}$/.test(name)) continue;
        const stats = await fs.stat(path.join(objects, shard, name)).catch(() => undefined);
        if (stats) yield { sha256: name, bytes: stats.size, modifiedAt: stats.mtime };
      }
    }
  }

  async deleteObject(sha256: string): Promise<void> {
    await fs.rm(this.objectPath(checkSha256(sha256)), { force: true });
  }

  async putDocument(name: string, value: unknown): Promise<void> {
    const target = path.join(this.root, documentKey(name));
    const temporary = await this.temporary();
    try {
      await fs.writeFile(temporary, `${JSON.stringify(value)}\n`, { ...PRIVATE_FILE, flag: 'wx' });
      await this.place(temporary, target);
    } finally {
      await fs.rm(temporary, { force: true });
    }
  }

  async getDocument<T = unknown>(name: string): Promise<T | null> {
    const text = await fs.readFile(path.join(this.root, documentKey(name)), 'utf8').catch((error) => {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    });
    return text === null ? null : (JSON.parse(text) as T);
  }

  async listDocuments(prefix: string): Promise<DocumentEntry[]> {
    const root = path.join(this.root, 'documents');
    const found: DocumentEntry[] = [];
    // Only the folder the prefix names (or its parent) is walked, not the whole store.
    const start = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    const walk = async (relative: string): Promise<void> => {
      for (const entry of await readdirOrEmpty(path.join(root, relative), true)) {
        const name = relative ? `${relative}/${entry.name}` : entry.name;
        if (entry.isDirectory()) await walk(name);
        else if (entry.name.endsWith('.json')) {
          const documentName = name.slice(0, -'.json'.length);
          if (!documentName.startsWith(prefix)) continue;
          const stats = await fs.stat(path.join(root, name)).catch(() => undefined);
          if (stats) found.push({ name: documentName, modifiedAt: stats.mtime });
        }
      }
    };
    await walk(start);
    return found.sort((a, b) => a.name.localeCompare(b.name));
  }

  async deleteDocument(name: string): Promise<void> {
    await fs.rm(path.join(this.root, documentKey(name)), { force: true });
  }
}

function corrupt(sha256: string, actual: string, location: string): StoreError {
  return new StoreError(
    'corrupt',
    `object ${sha256.slice(0, 12)}… in the store ${location} hashes to ${actual.slice(0, 12)}…: refused`,
  );
}

async function readdirOrEmpty(dir: string): Promise<string[]>;
async function readdirOrEmpty(dir: string, withTypes: true): Promise<import('node:fs').Dirent[]>;
async function readdirOrEmpty(dir: string, withTypes?: true) {
  try {
    return withTypes ? await fs.readdir(dir, { withFileTypes: true }) : await fs.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}
