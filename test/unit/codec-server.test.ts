import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec, ENCRYPTED_ENCODING } from '../../src/security/codec.js';
import { codecToken, startCodecServer, uiOrigins, type CodecServer } from '../../src/security/codec-server.js';
import { initKeyring, loadKeyring } from '../../src/security/keyring.js';

const UI = 'http://localhost:8233';
const SECRET = 'val_bpb went down with deeper layers';

const toJson = (payload: Payload) => ({
  metadata: Object.fromEntries(
    Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
  ),
  data: Buffer.from(payload.data ?? []).toString('base64'),
});
const fromJson = (payload: { metadata: Record<string, string>; data: string }): Payload => ({
  metadata: Object.fromEntries(Object.entries(payload.metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
  data: Buffer.from(payload.data, 'base64'),
});

let dir: string;
let codec: EncryptionCodec;
let server: CodecServer;
let token: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-codec-server-'));
  const env = { EXPCTL_HOME: dir };
  await initKeyring(env);
  codec = new EncryptionCodec(() => loadKeyring(env));
  ({ token } = await codecToken(undefined, env));
  server = await startCodecServer({ codec, token, uiOrigins: uiOrigins(UI), port: 0 });
});
afterAll(async () => {
  await server?.close();
  await fs.rm(dir, { recursive: true, force: true });
});

async function encrypted(value: unknown) {
  return toJson((await codec.encode([defaultPayloadConverter.toPayload(value)]))[0]!);
}

function post(route: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${server.url}${route}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

describe('expctl codec-server (the Web UI remote codec)', () => {
  it('keeps its token in a 0600 file of the state directory, and refuses a token file others can read', async () => {
    const file = path.join(dir, 'codec-server.token');
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect((await codecToken(undefined, { EXPCTL_HOME: dir })).token).toBe(token);
    const shared = path.join(dir, 'shared.token');
    await fs.writeFile(shared, `${'a'.repeat(32)}\n`, { mode: 0o644 });
    await fs.chmod(shared, 0o644);
    await expect(codecToken(shared)).rejects.toThrow(`chmod 600 ${shared}`);
    await expect(codecToken(path.join(dir, 'none.token'))).rejects.toThrow(/none\.token does not exist/);
  });

  it('answers nothing without the right token', async () => {
    const body = { payloads: [await encrypted(SECRET)] };
    const none = await post('/decode', body, { Origin: UI });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toBe('Bearer');
    expect(await none.text()).not.toContain(SECRET);
    expect((await post('/decode', body, { Authorization: 'Bearer wrong-token-wrong-token' })).status).toBe(403);
    expect((await post(`/${'x'.repeat(43)}/decode`, body)).status).toBe(403);
    expect((await post(`/${token}/decode`, body, { Origin: UI })).status).toBe(200);
    expect((await post(`/${token}/nothing`, body)).status).toBe(404);
    expect((await fetch(`${server.url}/${token}/decode`)).status).toBe(405);
  });

  it('decodes to plaintext with the token in the path (what the UI uses) or a Bearer header', async () => {
    const body = { payloads: [await encrypted({ hypothesis: SECRET }), await encrypted(undefined)] };
    for (const [route, headers] of [
      [`/${token}/decode`, { Origin: UI }],
      ['/decode', { Authorization: `Bearer ${token}` }],
    ] as const) {
      const response = await post(route, body, headers);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('application/json');
      const { payloads } = (await response.json()) as {
        payloads: { metadata: Record<string, string>; data: string }[];
      };
      expect(payloads.map((p) => defaultPayloadConverter.fromPayload(fromJson(p)))).toEqual([
        { hypothesis: SECRET },
        undefined,
      ]);
      expect(Buffer.from(payloads[0]!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
    }
  });

  it('encodes for the UI (a signal or query it sends), and passes plaintext through decode for display', async () => {
    const plain = toJson(defaultPayloadConverter.toPayload({ a: 1 }));
    const encoded = await post(`/${token}/encode`, { payloads: [plain] }, { Origin: UI });
    expect(encoded.status).toBe(200);
    const [payload] = ((await encoded.json()) as { payloads: { metadata: Record<string, string>; data: string }[] })
      .payloads;
    expect(Buffer.from(payload!.metadata.encoding!, 'base64').toString()).toBe(ENCRYPTED_ENCODING);
    expect(defaultPayloadConverter.fromPayload((await codec.decode([fromJson(payload!)]))[0]!)).toEqual({ a: 1 });

    const decoded = await post(`/${token}/decode`, { payloads: [plain] });
    expect(((await decoded.json()) as { payloads: unknown[] }).payloads).toEqual([plain]);
  });

  it('answers an empty list for a body with no payloads (proto3 JSON leaves an empty list out)', async () => {
    for (const body of [{}, { payloads: [] }]) {
      const decoded = await post(`/${token}/decode`, body);
      expect(decoded.status).toBe(200);
      expect(await decoded.json()).toEqual({ payloads: [] });
    }
  });

  it('answers CORS for the UI origin only, preflight included', async () => {
    const preflight = await fetch(`${server.url}/${token}/decode`, {
      method: 'OPTIONS',
      headers: {
        Origin: UI,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type,x-namespace',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(UI);
    expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
    expect(preflight.headers.get('access-control-allow-headers')).toBe('Content-Type, X-Namespace, Authorization');

    const alias = await post(`/${token}/decode`, { payloads: [] }, { Origin: 'http://127.0.0.1:8233' });
    expect(alias.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:8233');

    const evil = 'http://evil.example:8233';
    const evilPreflight = await fetch(`${server.url}/${token}/decode`, {
      method: 'OPTIONS',
      headers: { Origin: evil, 'Access-Control-Request-Method': 'POST' },
    });
    expect(evilPreflight.headers.get('access-control-allow-origin')).toBeNull();
    const evilPost = await post(`/${token}/decode`, { payloads: [await encrypted(SECRET)] }, { Origin: evil });
    expect(evilPost.headers.get('access-control-allow-origin')).toBeNull();
    expect(evilPost.status).toBe(403);
    expect(await evilPost.text()).not.toContain(SECRET);
  });

  it('refuses a malformed body and payloads that fail authentication', async () => {
    expect((await post(`/${token}/decode`, 'not json')).status).toBe(400);
    const wrongShape = await post(`/${token}/decode`, { payload: [] });
    expect(wrongShape.status).toBe(400);
    expect(await wrongShape.text()).toContain('payloads');
    const good = await encrypted(SECRET);
    const data = Buffer.from(good.data, 'base64');
    data[15] = data[15]! ^ 0xff;
    const tampered = await post(`/${token}/decode`, { payloads: [{ ...good, data: data.toString('base64') }] });
    expect(tampered.status).toBe(400);
    expect(await tampered.text()).toContain('payload_tampered');
  });
});
