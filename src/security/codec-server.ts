import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import type { Payload } from '@temporalio/common';
import { z } from 'zod';
import { devPorts, stateDir } from '../shared/settings.js';
import { isEncrypted, PayloadDecodeError, type EncryptionCodec } from './codec.js';
import { assertPrivateFile, ensurePrivateDir, PRIVATE_FILE } from './files.js';

/**
 * Temporal's remote codec protocol, for the Web UI (and `temporal --codec-endpoint`): POST
 * /encode and /decode with {"payloads":[{"metadata":{key: base64},"data": base64}]}, answered in
 * the same shape. The browser calls it directly, so it answers CORS for the UI's origin only,
 * and every request must carry the token: `Authorization: Bearer <token>`, or the token as the
 * first path segment (/<token>/decode), since the UI cannot add headers of its own.
 */

const MAX_BODY_BYTES = 32 * 1024 * 1024;
const TOKEN = /^[A-Za-z0-9_-]{16,256}$/;
const ALLOWED_HEADERS = 'Content-Type, X-Namespace, Authorization';

const base64 = z.string().regex(/^[A-Za-z0-9+/_-]*={0,2}$/, { error: 'must be base64' });
// Proto3 JSON leaves an empty list out: the Temporal CLI asks about a workflow without input as `{}`.
const bodySchema = z.strictObject({
  payloads: z
    .array(
      z.object({
        metadata: z.record(z.string(), base64).nullish(),
        data: base64.nullish(),
      }),
      { error: 'must be a list of payloads' },
    )
    .default([]),
});
type JsonPayload = z.infer<typeof bodySchema>['payloads'][number];

const fromJson = (payload: JsonPayload): Payload => ({
  metadata: Object.fromEntries(
    Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64')]),
  ),
  data: Buffer.from(payload.data ?? '', 'base64'),
});

const toJson = (payload: Payload) => ({
  metadata: Object.fromEntries(
    Object.entries(payload.metadata ?? {}).map(([key, value]) => [key, Buffer.from(value).toString('base64')]),
  ),
  data: Buffer.from(payload.data ?? []).toString('base64'),
});

/** The port of the codec endpoint: EXPCTL_CODEC_PORT, else the dev Web UI's port + 1 (8234 by default). */
export function defaultCodecPort(env: NodeJS.ProcessEnv = process.env): { port: number; explicit: boolean } {
  const raw = env.EXPCTL_CODEC_PORT;
  if (raw === undefined || raw === '') return { port: devPorts(env).uiPort + 1, explicit: false };
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`EXPCTL_CODEC_PORT must be a port number between 1 and 65535, got "${raw}"`);
  return { port, explicit: true };
}

/** The origins of a Web UI URL: a UI on localhost is also reachable as 127.0.0.1, and the other way round. */
export function uiOrigins(uiUrl: string): string[] {
  const url = new URL(uiUrl);
  const origins = [url.origin];
  const alias = url.hostname === 'localhost' ? '127.0.0.1' : url.hostname === '127.0.0.1' ? 'localhost' : undefined;
  if (alias) origins.push(`${url.protocol}//${alias}${url.port ? `:${url.port}` : ''}`);
  return origins;
}

export function defaultTokenFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir(env), 'codec-server.token');
}

/**
 * The codec endpoint's token: read from `file` (which must be private to its owner), or, with no
 * file given, from the state directory's token file, created (0600) with a random token if missing.
 */
export async function codecToken(
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ token: string; file: string; created: boolean }> {
  const target = path.resolve(file ?? defaultTokenFile(env));
  const read = async () => {
    await assertPrivateFile(target, 'the codec token file');
    const token = (await fs.readFile(target, 'utf8')).trim();
    if (!TOKEN.test(token))
      throw new Error(
        `the codec token file ${target} must hold one token of 16 to 256 letters, digits, _ or - (expctl makes one when no --token-file is given)`,
      );
    return token;
  };
  try {
    return { token: await read(), file: target, created: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    if (file !== undefined)
      throw new Error(
        `the codec token file ${target} does not exist: write a token (16 to 256 letters, digits, _ or -) into it with mode 0600, or leave --token-file out and expctl makes one`,
      );
  }
  await ensurePrivateDir(path.dirname(target));
  const token = crypto.randomBytes(32).toString('base64url');
  try {
    await fs.writeFile(target, `${token}\n`, { ...PRIVATE_FILE, flag: 'wx' });
    return { token, file: target, created: true };
  } catch (error) {
    // Made by another process at the same moment: use that one.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST')
      return { token: await read(), file: target, created: false };
    throw error;
  }
}

function sameToken(presented: string, token: string): boolean {
  const digest = (value: string) => crypto.createHash('sha256').update(value).digest();
  return crypto.timingSafeEqual(digest(presented), digest(token));
}

export interface CodecServerOptions {
  codec: EncryptionCodec;
  token: string;
  /** Origins (scheme://host:port) of the Web UIs allowed to call it from a browser. */
  uiOrigins: string[];
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** 0: any free port. */
  port: number;
}

export interface CodecServer {
  /** http://host:port */
  url: string;
  /** The URL with the token as its path: what an operator pastes into the Web UI's codec setting. */
  endpoint: string;
  port: number;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

async function readBody(request: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Answers one request; `cors` holds the CORS headers for an allowed origin (empty otherwise). */
async function answer(
  request: http.IncomingMessage,
  options: CodecServerOptions,
  cors: Record<string, string>,
): Promise<{ status: number; body?: unknown; headers?: Record<string, string> }> {
  const segments = new URL(request.url ?? '/', 'http://codec').pathname.split('/').filter(Boolean);
  const [pathToken, operation] = segments.length === 2 ? segments : [undefined, segments[0]];
  if (segments.length > 2 || (operation !== 'encode' && operation !== 'decode'))
    throw new HttpError(404, 'not found: POST /encode or /decode (or /<token>/encode, /<token>/decode)');
  if (request.method === 'OPTIONS') {
    // A preflight carries no credentials: it is answered to allowed origins without the token.
    const privateNetwork: Record<string, string> =
      request.headers['access-control-request-private-network'] === 'true'
        ? { 'Access-Control-Allow-Private-Network': 'true' }
        : {};
    return {
      status: 204,
      headers: cors['Access-Control-Allow-Origin']
        ? {
            'Access-Control-Allow-Methods': 'POST, OPTIONS',
            'Access-Control-Allow-Headers': ALLOWED_HEADERS,
            'Access-Control-Max-Age': '600',
            ...privateNetwork,
          }
        : {},
    };
  }
  if (request.method !== 'POST') throw new HttpError(405, 'use POST', { Allow: 'POST, OPTIONS' });

  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
  const presented = pathToken ?? bearer;
  if (!presented)
    throw new HttpError(401, 'a token is required: Authorization: Bearer <token>, or /<token>/' + operation, {
      'WWW-Authenticate': 'Bearer',
    });
  if (!sameToken(presented, options.token)) throw new HttpError(403, 'wrong token');

  let json: unknown;
  try {
    json = JSON.parse(await readBody(request));
  } catch (error) {
    if (error instanceof HttpError) throw error;
    throw new HttpError(400, 'the body is not valid JSON');
  }
  const parsed = bodySchema.safeParse(json);
  if (!parsed.success)
    throw new HttpError(
      400,
      `the body must be {"payloads":[{"metadata":{...},"data":"..."}]}: ${parsed.error.issues
        .map((issue) => `${issue.path.join('.') || 'body'} ${issue.message}`)
        .join('; ')}`,
    );
  const payloads = parsed.data.payloads.map(fromJson);
  if (operation === 'encode')
    return { status: 200, body: { payloads: (await options.codec.encode(payloads)).map(toJson) } };
  // Plaintext passes through here, unlike in the workers' codec: this endpoint only shows what
  // is stored (a payload some other tool wrote unencrypted is readable to the UI as it is anyway).
  const decoded = await Promise.all(
    payloads.map(async (payload) => (isEncrypted(payload) ? (await options.codec.decode([payload]))[0]! : payload)),
  ).catch((error: unknown) => {
    if (error instanceof PayloadDecodeError) throw new HttpError(400, error.message);
    throw error;
  });
  return { status: 200, body: { payloads: decoded.map(toJson) } };
}

/** Starts the codec endpoint on node:http; resolves once it listens. */
export async function startCodecServer(options: CodecServerOptions): Promise<CodecServer> {
  if (!TOKEN.test(options.token)) throw new Error('the codec token must be 16 to 256 letters, digits, _ or -');
  const allowed = new Set(options.uiOrigins.map((origin) => new URL(origin).origin));
  const server = http.createServer((request, response) => {
    const origin = request.headers.origin;
    const cors: Record<string, string> =
      origin && allowed.has(origin) ? { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' } : { Vary: 'Origin' };
    const send = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
      response.writeHead(status, {
        ...cors,
        ...headers,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        'Cache-Control': 'no-store',
      });
      response.end(body === undefined ? undefined : JSON.stringify(body));
    };
    // A browser page of another origin gets nothing, not even an answer it could not read.
    if (origin && !allowed.has(origin)) {
      request.resume();
      send(403, { error: `origin ${origin} is not allowed` });
      return;
    }
    answer(request, options, cors).then(
      (result) => send(result.status, result.body, result.headers),
      (error: unknown) => {
        if (error instanceof HttpError) send(error.status, { error: error.message }, error.headers);
        else send(500, { error: (error as Error).message });
        request.resume();
      },
    );
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    url,
    endpoint: `${url}/${options.token}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * The codec endpoint `expctl dev` serves for its Web UI: on EXPCTL_CODEC_PORT, else the UI port
 * + 1 (another free port when that one is taken), with the state directory's token.
 *
 * It is not handed to the server's `--ui-codec-endpoint`: the UI publishes that setting, token
 * included, to anyone who can load the UI (GET /api/v1/settings, no login on a dev server), so
 * every local user could decrypt through it. The operator pastes the printed endpoint into the
 * UI's codec server setting instead, which the browser keeps to itself.
 */
export async function startDevCodecEndpoint(
  codec: EncryptionCodec,
  uiUrl: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<CodecServer> {
  const { token } = await codecToken(undefined, env);
  const { port, explicit } = defaultCodecPort(env);
  const options = { codec, token, uiOrigins: uiOrigins(uiUrl), host: devPorts(env).ip, port };
  try {
    return await startCodecServer(options);
  } catch (error) {
    if (explicit || (error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    return startCodecServer({ ...options, port: 0 });
  }
}
