/**
 * A throwaway S3-compatible server: SeaweedFS (master, volume, filer and S3 gateway in one
 * process) on free ports, with its data in a temp dir and one identity (access key and secret).
 * The binary is the pinned one scripts/install-seaweedfs caches per user (or $EXPCTL_SEAWEEDFS,
 * or `weed` on PATH); where there is none, startSeaweedFs says so and the caller skips.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { freePort } from '../../src/shared/ports.js';
import { findSeaweedFs, SEAWEEDFS_INSTALL_HINT, SeaweedFsUnavailableError } from '../../src/store/seaweedfs.js';

export interface TestS3Server {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** A bucket made for this server's users. */
  bucket: string;
  /** The variables a store in `prefix` of the bucket reads: EXPCTL_STORE and the AWS ones. */
  env(prefix?: string): Record<string, string>;
  /** A client with the server's identity, for what the store itself never does (corrupting an object). */
  client: S3Client;
  /** Its log so far (for a failing test's message). */
  log(): string;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 120_000;
// The pinned SDK runs on every Node expctl supports; its notice about later releases is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const REGION = 'us-east-1';

/** Null when startSeaweedFs can start a server here; otherwise why not, and how to provide one. */
export async function seaweedFsUnavailable(): Promise<string | null> {
  try {
    return (await findSeaweedFs()) ? null : `no SeaweedFS here; provide it with ${SEAWEEDFS_INSTALL_HINT}`;
  } catch (error) {
    if (error instanceof SeaweedFsUnavailableError)
      return `${error.message} Or unset it and run ${SEAWEEDFS_INSTALL_HINT}`;
    throw error;
  }
}

/** The ports a single-process SeaweedFS listens on, each chosen free (gRPC ports too: their default is HTTP + 10000). */
async function ports() {
  const names = ['master', 'masterGrpc', 'volume', 'volumeGrpc', 'filer', 'filerGrpc', 's3', 's3Grpc'] as const;
  const chosen = new Set<number>();
  const result = {} as Record<(typeof names)[number], number>;
  for (const name of names) {
    let port = await freePort();
    while (chosen.has(port)) port = await freePort();
    chosen.add(port);
    result[name] = port;
  }
  return result;
}

/** The flags of `weed server` for an S3 gateway and nothing else that listens (no WebDAV, IAM, Iceberg, Lance). */
function serverArgs(dir: string, config: string, port: Awaited<ReturnType<typeof ports>>): string[] {
  return [
    'server',
    `-dir=${path.join(dir, 'data')}`,
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-master.port=${port.master}`,
    `-master.port.grpc=${port.masterGrpc}`,
    '-master.telemetry=false',
    // Small volumes: a test's data is small, and the disk may be too.
    '-master.volumeSizeLimitMB=1024',
    `-volume.port=${port.volume}`,
    `-volume.port.grpc=${port.volumeGrpc}`,
    '-volume.max=0',
    '-volume.preStopSeconds=0',
    '-filer',
    `-filer.port=${port.filer}`,
    `-filer.port.grpc=${port.filerGrpc}`,
    `-filer.localSocket=${path.join(dir, 'filer.sock')}`,
    '-s3',
    `-s3.port=${port.s3}`,
    `-s3.port.grpc=${port.s3Grpc}`,
    `-s3.localSocket=${path.join(dir, 's3.sock')}`,
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    // As on AWS: a missing bucket is an error, not made on the first upload.
    '-s3.autoCreateBucket=false',
    `-s3.config=${config}`,
  ];
}

/** Starts a fresh server with one bucket, or says why it cannot here (the caller skips with that reason). */
export async function startSeaweedFs(): Promise<TestS3Server | { skipped: string }> {
  const unavailable = await seaweedFsUnavailable();
  if (unavailable) return { skipped: unavailable };
  const binary = (await findSeaweedFs())!;

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-s3-'));
  fs.mkdirSync(path.join(dir, 'data'));
  const accessKeyId = `expctl${crypto.randomBytes(6).toString('hex')}`;
  const secretAccessKey = crypto.randomBytes(24).toString('hex');
  const config = path.join(dir, 's3.json');
  const identity = { name: 'expctl', credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }] };
  const actions = ['Admin', 'Read', 'Write', 'List', 'Tagging'];
  fs.writeFileSync(config, JSON.stringify({ identities: [{ ...identity, actions }] }), { mode: 0o600 });

  const port = await ports();
  const logFile = path.join(dir, 'server.log');
  const log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '(no log)');
  const toLog = { file: logFile, append: true } as const;
  const server = execa(binary, serverArgs(dir, config, port), {
    cwd: dir,
    stdin: 'ignore',
    stdout: toLog,
    stderr: toLog,
    reject: false,
  });
  let exited = false;
  void server.then(() => (exited = true));
  // SeaweedFS puts its gRPC sockets in a fixed folder of its own, named in its log, and leaves some.
  const removeSockets = () => {
    for (const [, socket] of log().matchAll(/listening on Unix socket (\S+\.sock)/g))
      fs.rmSync(socket!, { force: true });
  };
  const removeDir = () => {
    removeSockets();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // A test run that dies without stop() must not leave a server behind.
  const killOnExit = () => {
    try {
      if (!exited && server.pid) process.kill(server.pid, 'SIGKILL');
      removeDir();
    } catch {
      // Exiting anyway: leave what could not be cleaned.
    }
  };
  process.on('exit', killOnExit);

  const endpoint = `http://127.0.0.1:${port.s3}`;
  const client = new S3Client({
    region: REGION,
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    maxAttempts: 1,
    requestHandler: { connectionTimeout: 2_000, socketTimeout: 10_000 },
  });
  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      process.off('exit', killOnExit);
      client.destroy();
      if (!exited) {
        server.kill('SIGTERM');
        const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
        await server;
        clearTimeout(timer);
      }
      removeDir();
    })());

  const bucket = 'expctl-test';
  try {
    await untilReady(client, bucket, () => exited);
  } catch (error) {
    const serverLog = log();
    await stop();
    throw new Error(
      `SeaweedFS (${binary}) did not start: ${(error as Error).message}\nserver log:\n${serverLog.slice(-4000)}`,
    );
  }
  return {
    endpoint,
    accessKeyId,
    secretAccessKey,
    region: REGION,
    bucket,
    client,
    log,
    stop,
    env: (prefix = '') => ({
      EXPCTL_STORE: `s3://${bucket}${prefix ? `/${prefix}` : ''}`,
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
      AWS_REGION: REGION,
    }),
  };
}

/**
 * Ready means an object can be written: the S3 gateway answers, the bucket is made, and a volume
 * server has joined the master (before that, uploads fail).
 */
async function untilReady(client: S3Client, bucket: string, hasExited: () => boolean): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let bucketMade = false;
  let last = 'no answer yet';
  for (;;) {
    if (hasExited()) throw new Error('it exited');
    try {
      if (!bucketMade) {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        bucketMade = true;
      }
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: 'ready-probe', Body: 'ready' }));
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'ready-probe' }));
      return;
    } catch (error) {
      if ((error as Error).name === 'BucketAlreadyOwnedByYou') bucketMade = true;
      last = `${(error as Error).name}: ${(error as Error).message}`;
    }
    if (Date.now() > deadline) throw new Error(`not ready within ${READY_TIMEOUT_MS / 1000} s (last: ${last})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
