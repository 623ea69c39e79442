/**
 * One suite, both fleet stores: the filesystem (the default) and an S3-compatible bucket on a real
 * SeaweedFS server (test/helpers/seaweedfs.ts). The S3 half is skipped, saying how to provide the
 * server, only where none can be had.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigurationError } from '../../src/shared/settings.js';
import { attemptDocument, attemptWriter, claimFence, type FenceToken } from '../../src/store/fence.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import { openStore } from '../../src/store/open.js';
import { S3Store } from '../../src/store/s3-store.js';
import { objectKey, StoreError, type FleetStore, type StoreErrorCode } from '../../src/store/store.js';
import { seaweedFsUnavailable, startSeaweedFs, type TestS3Server } from '../helpers/seaweedfs.js';

const S3_UNAVAILABLE = await seaweedFsUnavailable();
if (S3_UNAVAILABLE) console.warn(`store.test.ts: the S3 half is SKIPPED: ${S3_UNAVAILABLE}`);

const MiB = 1024 * 1024;
const sha256Of = (bytes: Uint8Array) => crypto.createHash('sha256').update(bytes).digest('hex');

/** One fresh, empty store, and a way to change an object's bytes behind the store's back. */
interface Harness {
  store: FleetStore;
  overwriteObject(sha256: string, bytes: Uint8Array): Promise<void>;
}

interface Backend {
  name: string;
  skipped: string | null;
  start(): Promise<void>;
  fresh(): Promise<Harness>;
}

const scratch: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-store-test-'));
  scratch.push(dir);
  return dir;
}
afterAll(async () => {
  await Promise.all(scratch.map((dir) => fs.rm(dir, { recursive: true, force: true })));
});

const filesystem: Backend = {
  name: 'filesystem',
  skipped: null,
  async start() {},
  async fresh() {
    const root = path.join(await tempDir(), 'store');
    return {
      store: new FilesystemStore(root),
      overwriteObject: (sha256, bytes) => fs.writeFile(path.join(root, objectKey(sha256)), bytes),
    };
  },
};

/** One SeaweedFS server for the whole file, started when a test first needs it. */
let server: TestS3Server | undefined;
let starting: Promise<TestS3Server> | undefined;
async function s3Server(): Promise<TestS3Server> {
  starting ??= startSeaweedFs().then((started) => {
    if ('skipped' in started) throw new Error(started.skipped);
    return (server = started);
  });
  return starting;
}
afterAll(() => server?.stop(), 30_000);

const s3: Backend = {
  name: 'S3 (SeaweedFS)',
  skipped: S3_UNAVAILABLE,
  async start() {
    await s3Server();
  },
  async fresh() {
    // Each test its own prefix of the one bucket: as empty as a new store.
    const prefix = `t-${crypto.randomUUID()}`;
    const store = await openStore(server!.env(prefix));
    return {
      store,
      overwriteObject: async (sha256, bytes) => {
        await server!.client.send(
          new PutObjectCommand({ Bucket: server!.bucket, Key: `${prefix}/${objectKey(sha256)}`, Body: bytes }),
        );
      },
    };
  },
};

async function refusal(promise: Promise<unknown>): Promise<StoreError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a refusal, and it succeeded');
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(StoreError);
  return error as StoreError;
}

async function expectRefused(promise: Promise<unknown>, code: StoreErrorCode, message: RegExp): Promise<void> {
  const error = await refusal(promise);
  expect(error.code).toBe(code);
  expect(error.message).toMatch(message);
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

describe.each([filesystem, s3])('the $name store', (backend) => {
  const skipNote = backend.skipped ? ` [SKIPPED: ${backend.skipped}]` : '';
  const test = it.skipIf(backend.skipped !== null);
  let work: string;

  beforeAll(async () => {
    if (backend.skipped) return;
    await backend.start();
    work = await tempDir();
  }, 180_000);

  async function writeFile(name: string, bytes: Uint8Array): Promise<string> {
    const file = path.join(work, `${crypto.randomUUID()}-${name}`);
    await fs.writeFile(file, bytes);
    return file;
  }

  test(`stores a file under its sha256 and writes it back whole, leaving no partial file${skipNote}`, async () => {
    const { store } = await backend.fresh();
    const bytes = crypto.randomBytes(MiB + 123);
    const stored = await store.putFile(await writeFile('weights.bin', bytes));
    expect(stored).toEqual({ sha256: sha256Of(bytes), bytes: bytes.length, uri: store.objectUri(sha256Of(bytes)) });
    expect(stored.uri).toBe(`${store.location}/objects/${stored.sha256.slice(0, 2)}/${stored.sha256}`);
    expect(await store.hasObject(stored.sha256)).toBe(true);

    const out = path.join(await tempDir(), 'restored.bin');
    expect(await store.getFile(stored.sha256, out)).toEqual(stored);
    expect(sha256Of(await fs.readFile(out))).toBe(stored.sha256);
    expect(await fs.readdir(path.dirname(out))).toEqual(['restored.bin']);
  });

  test(`stores bytes and reads them back; an absent object is no object${skipNote}`, async () => {
    const { store } = await backend.fresh();
    const bytes = Buffer.from('{"step": 1200, "loss": 2.31}\n');
    const stored = await store.putBytes(bytes);
    expect(stored.sha256).toBe(sha256Of(bytes));
    expect(stored.bytes).toBe(bytes.length);
    expect(await store.getBytes(stored.sha256)).toEqual(bytes);
    expect(await store.hasObject(sha256Of(Buffer.from('other')))).toBe(false);
  });

  test(`keeps one object for the same content, lists it, and deletes it${skipNote}`, async () => {
    const { store } = await backend.fresh();
    const bytes = crypto.randomBytes(64 * 1024);
    const first = await store.putFile(await writeFile('a.pt', bytes));
    const second = await store.putFile(await writeFile('b.pt', bytes));
    const third = await store.putBytes(bytes);
    const other = await store.putBytes(Buffer.from('another object'));
    expect(second).toEqual(first);
    expect(third).toEqual(first);

    const listed = await collect(store.listObjects());
    expect(
      listed.map(({ sha256, bytes: size }) => ({ sha256, bytes: size })).sort((a, b) => a.bytes - b.bytes),
    ).toEqual([
      { sha256: other.sha256, bytes: other.bytes },
      { sha256: first.sha256, bytes: bytes.length },
    ]);
    for (const entry of listed) expect(Date.now() - entry.modifiedAt.getTime()).toBeLessThan(10 * 60_000);

    await store.deleteObject(first.sha256);
    expect(await store.hasObject(first.sha256)).toBe(false);
    expect((await collect(store.listObjects())).map((entry) => entry.sha256)).toEqual([other.sha256]);
  });

  test(`refuses an object whose bytes no longer match its sha256, and writes nothing${skipNote}`, async () => {
    const { store, overwriteObject } = await backend.fresh();
    const bytes = crypto.randomBytes(256 * 1024);
    const stored = await store.putBytes(bytes);
    const tampered = Buffer.from(bytes);
    tampered[1000] = tampered[1000]! ^ 0xff;
    await overwriteObject(stored.sha256, tampered);

    const dir = await tempDir();
    const out = path.join(dir, 'checkpoint.pt');
    await expectRefused(
      store.getFile(stored.sha256, out),
      'corrupt',
      new RegExp(
        `object ${stored.sha256.slice(0, 12)}… in the store .* hashes to ${sha256Of(tampered).slice(0, 12)}…: refused`,
      ),
    );
    expect(await fs.readdir(dir)).toEqual([]);
    await expectRefused(store.getBytes(stored.sha256), 'corrupt', /refused/);
  });

  test(`says an object is missing, and writes nothing${skipNote}`, async () => {
    const { store } = await backend.fresh();
    const absent = sha256Of(Buffer.from('never stored'));
    const dir = await tempDir();
    await expectRefused(
      store.getFile(absent, path.join(dir, 'x')),
      'missing',
      new RegExp(`object ${absent.slice(0, 12)}… is not in the store ${store.location.replace(/[/.]/g, '\\$&')}`),
    );
    expect(await fs.readdir(dir)).toEqual([]);
    await expectRefused(store.getBytes(absent), 'missing', /is not in the store/);
  });

  test(`replaces documents whole, lists them by prefix, and deletes them${skipNote}`, async () => {
    const { store } = await backend.fresh();
    await store.putDocument('runs/exp-1/attempts/1/checkpoint', { attempt: 1, files: [{ path: 'a.pt' }], extra: true });
    await store.putDocument('runs/exp-1/attempts/1/checkpoint', { attempt: 1, files: [] });
    await store.putDocument('runs/exp-1/attempts/10/log', { chunks: 3 });
    await store.putDocument('runs/exp-1/fence', { attempt: 10 });
    await store.putDocument('runs/exp-2/fence', { attempt: 1 });

    expect(await store.getDocument('runs/exp-1/attempts/1/checkpoint')).toEqual({ attempt: 1, files: [] });
    expect(await store.getDocument('runs/exp-1/attempts/2/checkpoint')).toBeNull();

    const names = async (prefix: string) => (await store.listDocuments(prefix)).map((entry) => entry.name);
    expect(await names('runs/exp-1/')).toEqual([
      'runs/exp-1/attempts/1/checkpoint',
      'runs/exp-1/attempts/10/log',
      'runs/exp-1/fence',
    ]);
    // A prefix is a prefix of the name, not only a folder.
    expect(await names('runs/exp-1/attempts/1')).toEqual([
      'runs/exp-1/attempts/1/checkpoint',
      'runs/exp-1/attempts/10/log',
    ]);
    expect(await names('runs/exp-3/')).toEqual([]);
    const [entry] = await store.listDocuments('runs/exp-2/');
    expect(entry!.modifiedAt).toBeInstanceOf(Date);

    await store.deleteDocument('runs/exp-1/fence');
    await store.deleteDocument('runs/exp-1/never-written');
    expect(await store.getDocument('runs/exp-1/fence')).toBeNull();
    expect(await names('runs/')).toEqual([
      'runs/exp-1/attempts/1/checkpoint',
      'runs/exp-1/attempts/10/log',
      'runs/exp-2/fence',
    ]);
  });

  test(`refuses every write of an attempt once a later attempt holds the fence${skipNote}`, async () => {
    const { store } = await backend.fresh();
    const first: FenceToken = { experimentId: 'exp-fence', attempt: 1, leaseId: 'lease-a' };
    const second: FenceToken = { experimentId: 'exp-fence', attempt: 2, leaseId: 'lease-b' };
    await claimFence(store, first);
    const stale = attemptWriter(store, first);
    await stale.putAttemptDocument('checkpoint', { attempt: 1, step: 100 });

    await claimFence(store, second);
    const current = attemptWriter(store, second);
    const fencedMessage =
      /attempt 1 of exp-fence \(lease lease-a\) is no longer current: attempt 2 \(lease lease-b\) holds its fence/;
    await expectRefused(stale.putAttemptDocument('checkpoint', { attempt: 1, step: 200 }), 'fenced', fencedMessage);
    await expectRefused(stale.putBytes(Buffer.from('zombie bytes')), 'fenced', fencedMessage);
    await expectRefused(stale.putFile(await writeFile('zombie.pt', Buffer.from('zombie'))), 'fenced', fencedMessage);
    await expectRefused(claimFence(store, first), 'fenced', fencedMessage);
    expect(await store.hasObject(sha256Of(Buffer.from('zombie bytes')))).toBe(false);
    expect(await store.getDocument(attemptDocument('exp-fence', 1, 'checkpoint'))).toEqual({ attempt: 1, step: 100 });

    await current.putAttemptDocument('checkpoint', { attempt: 2, step: 150 });
    expect(await store.getDocument(attemptDocument('exp-fence', 2, 'checkpoint'))).toEqual({ attempt: 2, step: 150 });
    // The same attempt on a new lease (re-placed without a new attempt number) is refused too.
    await expectRefused(
      attemptWriter(store, { ...second, leaseId: 'lease-c' }).putBytes(Buffer.from('x')),
      'fenced',
      /lease lease-c/,
    );
  });

  test(`stores and restores a large file (in parts on S3)${skipNote}`, async () => {
    const { store } = await backend.fresh();
    const bytes = crypto.randomBytes(40 * MiB);
    const stored = await store.putFile(await writeFile('large.pt', bytes));
    expect(stored).toMatchObject({ sha256: sha256Of(bytes), bytes: 40 * MiB });
    if (store instanceof S3Store) {
      // A multipart upload's ETag ends in -<parts>: 40 MiB went up in 16 MiB parts.
      const head = await server!.client.send(
        new HeadObjectCommand({ Bucket: store.bucket, Key: `${store.prefix}/${objectKey(stored.sha256)}` }),
      );
      expect(head.ETag).toMatch(/-3"$/);
      expect(head.ContentLength).toBe(40 * MiB);
    }
    const out = path.join(await tempDir(), 'large.pt');
    await store.getFile(stored.sha256, out);
    expect((await fs.stat(out)).size).toBe(40 * MiB);
    expect(sha256Of(await fs.readFile(out))).toBe(stored.sha256);
  }, 120_000);
});

describe.skipIf(S3_UNAVAILABLE !== null)('the S3 store, beyond the shared suite', () => {
  const skipNote = S3_UNAVAILABLE ? ` [SKIPPED: ${S3_UNAVAILABLE}]` : '';
  let own: TestS3Server;
  beforeAll(async () => {
    own = await s3Server();
  }, 180_000);

  const sha = sha256Of(Buffer.from('anything'));

  it(`says "unreachable" at once when nothing listens at the endpoint${skipNote}`, async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const store = await openStore({ ...own.env('p'), AWS_ENDPOINT_URL: `http://127.0.0.1:${closed}` });
    const started = Date.now();
    await expectRefused(
      store.hasObject(sha),
      'unreachable',
      new RegExp(`the store s3://${own.bucket}/p at http://127.0.0.1:${closed} did not answer .*ECONNREFUSED`),
    );
    await expectRefused(store.putDocument('runs/x/fence', {}), 'unreachable', /did not answer/);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it(`gives up on an endpoint that accepts and never answers, within its bounded time${skipNote}`, async () => {
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const env = { ...own.env('p'), AWS_ENDPOINT_URL: `http://127.0.0.1:${port}` };
      const store = new S3Store({ kind: 's3', bucket: own.bucket, prefix: 'p' }, env, {
        connectMs: 1_000,
        idleMs: 1_500,
        attempts: 2,
      });
      const started = Date.now();
      await expectRefused(store.getDocument('runs/x/fence'), 'unreachable', /did not answer/);
      const took = Date.now() - started;
      // Two attempts of 1.5 s each, and the backoff between them; never an open-ended wait.
      expect(took).toBeGreaterThanOrEqual(2_500);
      expect(took).toBeLessThan(15_000);
      expect(held.length).toBe(2);
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
    }
  });

  it(`names a missing bucket and refused credentials as configuration, not as a missing object${skipNote}`, async () => {
    const noBucket = await openStore({ ...own.env(), EXPCTL_STORE: 's3://no-such-bucket/p' });
    const missingBucket = noBucket.getDocument('runs/x/fence');
    await expect(missingBucket).rejects.toBeInstanceOf(ConfigurationError);
    await expect(missingBucket).rejects.toThrow(`the bucket "no-such-bucket" does not exist at ${own.endpoint}`);
    await expect(noBucket.putBytes(Buffer.from('x'))).rejects.toThrow(/no-such-bucket/);

    const wrongSecret = await openStore({ ...own.env('p'), AWS_SECRET_ACCESS_KEY: 'not-the-secret' });
    const refused = wrongSecret.hasObject(sha);
    await expect(refused).rejects.toBeInstanceOf(ConfigurationError);
    await expect(refused).rejects.toThrow(
      `${own.endpoint} refused the credentials for s3://${own.bucket}/p (HTTP 403); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
    );
  });

  it(`refuses half a set of credentials and an endpoint that is no URL before any request${skipNote}`, async () => {
    const { AWS_SECRET_ACCESS_KEY: _secret, ...keyOnly } = own.env('p');
    await expect(openStore(keyOnly)).rejects.toThrow(
      `s3://${own.bucket}/p needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; only AWS_ACCESS_KEY_ID is set`,
    );
    await expect(openStore({ ...own.env('p'), AWS_ENDPOINT_URL: '127.0.0.1:8333' })).rejects.toThrow(
      `AWS_ENDPOINT_URL must be an http:// or https:// URL (for s3://${own.bucket}/p), not "127.0.0.1:8333"`,
    );
  });
});
