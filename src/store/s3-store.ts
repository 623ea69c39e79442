import crypto from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import { pipeline as connect, Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { PRIVATE_FILE_MODE } from '../security/files.js';
import { ConfigurationError } from '../shared/settings.js';
import type { StoreLocation } from './location.js';
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

/** How long the store waits on a silent endpoint, and how often it asks again: bounded, so a dead endpoint cannot hang a worker. */
export interface S3StoreTimeouts {
  /** To open a connection (ms). */
  connectMs: number;
  /** A connection that carries no bytes this long (ms) is given up. */
  idleMs: number;
  /** Attempts per request, the first included (the SDK backs off between them). */
  attempts: number;
}

export const DEFAULT_S3_TIMEOUTS: S3StoreTimeouts = { connectMs: 5_000, idleMs: 30_000, attempts: 3 };

/** Parts of a multipart upload: large enough for throughput, at most 4 in memory at once. */
const PART_BYTES = 16 * 1024 * 1024;
const PARTS_IN_FLIGHT = 4;
/** S3 allows 10,000 parts; larger files get larger parts. */
const MAX_PARTS = 9_000;

type S3Location = Extract<StoreLocation, { kind: 's3' }>;

/** Hashes what passes through it. */
function hashing(hash: crypto.Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

async function sha256OfFile(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/**
 * The client's settings from the standard AWS variables of `env`: AWS_ENDPOINT_URL (an
 * S3-compatible server, addressed path-style; unset for AWS itself), AWS_REGION (us-east-1 when
 * unset: S3-compatible servers ignore it), and AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY (and
 * AWS_SESSION_TOKEN). Without keys, the SDK's own chain (profiles, instance roles) provides them.
 */
export function s3ClientConfig(
  location: string,
  env: NodeJS.ProcessEnv,
  timeouts: S3StoreTimeouts = DEFAULT_S3_TIMEOUTS,
): S3ClientConfig {
  const endpoint = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  if (endpoint && !/^https?:\/\/[^/]/.test(endpoint))
    throw new ConfigurationError(
      `AWS_ENDPOINT_URL must be an http:// or https:// URL (for ${location}), not "${endpoint}"`,
    );
  const accessKeyId = env.AWS_ACCESS_KEY_ID || undefined;
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY || undefined;
  if (Boolean(accessKeyId) !== Boolean(secretAccessKey))
    throw new ConfigurationError(
      `${location} needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; only ${accessKeyId ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY'} is set`,
    );
  return {
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    ...(accessKeyId && secretAccessKey
      ? { credentials: { accessKeyId, secretAccessKey, sessionToken: env.AWS_SESSION_TOKEN || undefined } }
      : {}),
    maxAttempts: timeouts.attempts,
    requestHandler: { connectionTimeout: timeouts.connectMs, socketTimeout: timeouts.idleMs },
    // Every object is verified by its sha256 on read; the SDK's own CRC trailers are left to
    // servers that ask for them, since several S3-compatible servers refuse them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  };
}

interface AwsError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EPIPE',
]);

/** No such key (a missing bucket answers 404 too, and is named apart). */
const isNotFound = (error: AwsError) =>
  error.name !== 'NoSuchBucket' &&
  (error.name === 'NoSuchKey' || error.name === 'NotFound' || error.$metadata?.httpStatusCode === 404);

/** The server's error name, or the HTTP status where it gave none (a HEAD has no body). */
const errorName = (error: AwsError) =>
  error.name && !/^Unknown/.test(error.name) ? error.name : `HTTP ${error.$metadata?.httpStatusCode ?? '?'}`;

/**
 * The fleet store in an S3-compatible bucket: `<prefix>/objects/ab/<sha256>` and
 * `<prefix>/documents/<name>.json`. An object appears whole or not at all (S3 commits a PUT, and a
 * multipart upload on its completion, atomically); reads are verified against the sha256 before
 * anything is handed on.
 */
export class S3Store implements FleetStore {
  readonly location: string;
  readonly bucket: string;
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly endpoint: string;

  constructor(location: S3Location, env: NodeJS.ProcessEnv, timeouts: S3StoreTimeouts = DEFAULT_S3_TIMEOUTS) {
    this.bucket = location.bucket;
    this.prefix = location.prefix.replace(/^\/+|\/+$/g, '');
    this.location = `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
    const config = s3ClientConfig(this.location, env, timeouts);
    // The pinned SDK runs on the Node versions expctl supports; its notice about later SDK releases
    // would otherwise reach every command's stderr.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.endpoint = typeof config.endpoint === 'string' ? config.endpoint : `AWS S3 (${String(config.region)})`;
    this.client = new S3Client(config);
  }

  /** Closes the client's connections (a process that opened a store for one command can exit at once). */
  close(): void {
    this.client.destroy();
  }

  objectUri(sha256: string): string {
    return `${this.location}/${objectKey(sha256)}`;
  }

  private key(relative: string): string {
    return this.prefix ? `${this.prefix}/${relative}` : relative;
  }

  private objectKeyOf(sha256: string): string {
    return this.key(objectKey(sha256));
  }

  /** Runs one request, naming what went wrong in the store's terms. */
  private async request<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      throw this.explain(what, error);
    }
  }

  private explain(what: string, raw: unknown): Error {
    if (raw instanceof StoreError || raw instanceof ConfigurationError) return raw;
    const error = raw as AwsError;
    const status = error.$metadata?.httpStatusCode;
    const detail = error.message || error.name || String(raw);
    if (error.name === 'CredentialsProviderError')
      return new ConfigurationError(
        `no AWS credentials for the store ${this.location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) (${detail})`,
      );
    if (error.name === 'NoSuchBucket')
      return new ConfigurationError(
        `the bucket "${this.bucket}" does not exist at ${this.endpoint} (EXPCTL_STORE=${this.location})`,
      );
    if (['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied'].includes(error.name ?? '') || status === 403)
      return new ConfigurationError(
        `${this.endpoint} refused the credentials for ${this.location} (${errorName(error)}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
      );
    const network =
      NETWORK_CODES.has(error.code ?? '') ||
      NETWORK_CODES.has(error.name ?? '') ||
      error.name === 'TimeoutError' ||
      error.name === 'RequestTimeout' ||
      (status !== undefined && status >= 500);
    if (network)
      return new StoreError(
        'unreachable',
        `the store ${this.location} at ${this.endpoint} did not answer (${what}): ${detail}`,
      );
    return new Error(`the store ${this.location} at ${this.endpoint}: ${what} failed: ${detail}`, { cause: raw });
  }

  async putFile(file: string): Promise<StoredObject> {
    const { sha256, bytes } = await sha256OfFile(file);
    if (!(await this.hasObject(sha256))) await this.upload(file, sha256, bytes);
    return { sha256, bytes, uri: this.objectUri(sha256) };
  }

  /**
   * Uploads a file under the sha256 it had when hashed (multipart above one part), hashing it again
   * as it goes: a file changed in between is removed again and refused, never kept under a wrong name.
   */
  private async upload(file: string, sha256: string, bytes: number): Promise<void> {
    const Key = this.objectKeyOf(sha256);
    const hash = crypto.createHash('sha256');
    // connect() (not pipe()) so a read error fails the upload instead of leaving it waiting.
    const body = connect(createReadStream(file), hashing(hash), () => {});
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key, Body: body },
      partSize: Math.max(PART_BYTES, Math.ceil(bytes / MAX_PARTS)),
      queueSize: PARTS_IN_FLIGHT,
    });
    await this.request(`upload of ${file}`, () => upload.done());
    const uploaded = hash.digest('hex');
    if (uploaded !== sha256) {
      await this.request('removal of a changed upload', () =>
        this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })),
      );
      throw new Error(
        `${file} changed while it was being stored (it hashed to ${sha256.slice(0, 12)}…, then ${uploaded.slice(0, 12)}…): not stored`,
      );
    }
  }

  async putBytes(bytes: Uint8Array): Promise<StoredObject> {
    const sha256 = crypto.createHash('sha256').update(bytes).digest('hex');
    if (!(await this.hasObject(sha256)))
      await this.request(`upload of ${bytes.byteLength} bytes`, () =>
        this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKeyOf(sha256), Body: bytes })),
      );
    return { sha256, bytes: bytes.byteLength, uri: this.objectUri(sha256) };
  }

  private missing(sha256: string): StoreError {
    return new StoreError('missing', `object ${sha256.slice(0, 12)}… is not in the store ${this.location}`);
  }

  private corrupt(sha256: string, actual: string): StoreError {
    return new StoreError(
      'corrupt',
      `object ${sha256.slice(0, 12)}… in the store ${this.location} hashes to ${actual.slice(0, 12)}…: refused`,
    );
  }

  /** The object's body as a stream, or `missing`. */
  private async openObject(sha256: string): Promise<Readable> {
    const Key = this.objectKeyOf(sha256);
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      return response.Body as Readable;
    } catch (error) {
      if (isNotFound(error as AwsError)) throw this.missing(sha256);
      throw this.explain(`download of ${Key}`, error);
    }
  }

  async getFile(sha256: string, target: string): Promise<StoredObject> {
    checkSha256(sha256);
    const body = await this.openObject(sha256);
    const temporary = `${target}.expctl-partial-${crypto.randomUUID()}`;
    const hash = crypto.createHash('sha256');
    try {
      await this.request(`download of ${sha256.slice(0, 12)}…`, () =>
        pipeline(body, hashing(hash), createWriteStream(temporary, { mode: PRIVATE_FILE_MODE, flags: 'wx' })),
      );
      const actual = hash.digest('hex');
      if (actual !== sha256) throw this.corrupt(sha256, actual);
      const bytes = (await fs.stat(temporary)).size;
      await fs.rename(temporary, target);
      return { sha256, bytes, uri: this.objectUri(sha256) };
    } finally {
      await fs.rm(temporary, { force: true });
    }
  }

  async getBytes(sha256: string): Promise<Buffer> {
    checkSha256(sha256);
    const body = await this.openObject(sha256);
    const chunks: Buffer[] = [];
    await this.request(`download of ${sha256.slice(0, 12)}…`, async () => {
      for await (const chunk of body as AsyncIterable<Buffer>) chunks.push(chunk);
    });
    const bytes = Buffer.concat(chunks);
    const actual = crypto.createHash('sha256').update(bytes).digest('hex');
    if (actual !== sha256) throw this.corrupt(sha256, actual);
    return bytes;
  }

  async hasObject(sha256: string): Promise<boolean> {
    const Key = this.objectKeyOf(sha256);
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
      return true;
    } catch (error) {
      if (isNotFound(error as AwsError)) return false;
      throw this.explain(`lookup of ${Key}`, error);
    }
  }

  /** Every key under `<prefix>/<under>`, page by page. */
  private async *keys(under: string): AsyncIterable<{ Key: string; Size: number; LastModified: Date }> {
    const pages = paginateListObjectsV2({ client: this.client }, { Bucket: this.bucket, Prefix: this.key(under) });
    const iterator = pages[Symbol.asyncIterator]();
    for (;;) {
      const page = await this.request(`listing of ${this.key(under)}`, () => iterator.next());
      if (page.done) return;
      for (const entry of page.value.Contents ?? [])
        if (entry.Key) yield { Key: entry.Key, Size: entry.Size ?? 0, LastModified: entry.LastModified ?? new Date(0) };
    }
  }

  async *listObjects(): AsyncIterable<ObjectEntry> {
    for await (const entry of this.keys('objects/')) {
      const name = entry.Key.slice(entry.Key.lastIndexOf('/') + 1);
      if (/^[0-9a-f]{64}$/.test(name)) yield { sha256: name, bytes: entry.Size, modifiedAt: entry.LastModified };
    }
  }

  async deleteObject(sha256: string): Promise<void> {
    const Key = this.objectKeyOf(sha256);
    await this.request(`removal of ${Key}`, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })),
    );
  }

  async putDocument(name: string, value: unknown): Promise<void> {
    const Key = this.key(documentKey(name));
    const Body = `${JSON.stringify(value)}\n`;
    await this.request(`write of ${Key}`, () =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body, ContentType: 'application/json' })),
    );
  }

  async getDocument<T = unknown>(name: string): Promise<T | null> {
    const Key = this.key(documentKey(name));
    try {
      const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      const text = await this.request(`read of ${Key}`, () => response.Body!.transformToString('utf8'));
      return JSON.parse(text) as T;
    } catch (error) {
      if (isNotFound(error as AwsError)) return null;
      throw this.explain(`read of ${Key}`, error);
    }
  }

  async listDocuments(prefix: string): Promise<DocumentEntry[]> {
    const root = this.key('documents/');
    const found: DocumentEntry[] = [];
    for await (const entry of this.keys(`documents/${prefix}`)) {
      if (!entry.Key.endsWith('.json')) continue;
      const name = entry.Key.slice(root.length, -'.json'.length);
      if (name.startsWith(prefix)) found.push({ name, modifiedAt: entry.LastModified });
    }
    return found.sort((a, b) => a.name.localeCompare(b.name));
  }

  async deleteDocument(name: string): Promise<void> {
    const Key = this.key(documentKey(name));
    await this.request(`removal of ${Key}`, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key })),
    );
  }
}
