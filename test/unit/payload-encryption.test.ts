import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA } from '../../src/security/codec.js';
import {
  createKeyring,
  deriveKey,
  ensureKeyring,
  initKeyring,
  KeyringMissingError,
  listKeys,
  loadKeyring,
  parseKeyring,
  rotateKeyring,
} from '../../src/security/keyring.js';

const text = (bytes: Uint8Array | null | undefined) => Buffer.from(bytes ?? []).toString('utf8');
const SECRET = 'the hypothesis nobody may read';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-keys-'));
});
afterAll(async () => fs.rm(dir, { recursive: true, force: true }));

/** An env naming a keyring file of its own (nothing of the test run's environment). */
function keyEnv(name: string): NodeJS.ProcessEnv {
  return { EXPCTL_KEY_FILE: path.join(dir, name, 'payload-keys.json'), EXPCTL_HOME: path.join(dir, name, 'home') };
}

const codecFor = (env: NodeJS.ProcessEnv) => new EncryptionCodec(() => loadKeyring(env));

describe('the payload codec', () => {
  it('round-trips payloads as AES-256-GCM ciphertext naming the key, with no plaintext left', async () => {
    const env = keyEnv('roundtrip');
    const { keyId } = await initKeyring(env);
    const codec = codecFor(env);
    const plain = [
      defaultPayloadConverter.toPayload({ hypothesis: SECRET, n: 3 }),
      defaultPayloadConverter.toPayload(undefined),
      defaultPayloadConverter.toPayload(new Uint8Array([0, 1, 2, 255])),
    ];
    const encoded = await codec.encode(plain);
    expect(encoded).toHaveLength(3);
    for (const payload of encoded) {
      expect(text(payload.metadata?.encoding)).toBe(ENCRYPTED_ENCODING);
      expect(text(payload.metadata?.[KEY_ID_METADATA])).toBe(keyId);
      expect(Object.keys(payload.metadata ?? {}).sort()).toEqual(['encoding', KEY_ID_METADATA].sort());
      expect(Buffer.from(payload.data!).includes(Buffer.from('hypothesis'))).toBe(false);
      expect(Buffer.from(payload.data!).includes(Buffer.from('json/plain'))).toBe(false);
    }
    // A random IV each time: the same payload never encrypts to the same bytes.
    const [again] = await codec.encode([plain[0]!]);
    expect(Buffer.from(again!.data!).equals(Buffer.from(encoded[0]!.data!))).toBe(false);

    const decoded = await codec.decode(encoded);
    expect(decoded.map((p) => defaultPayloadConverter.fromPayload(p))).toEqual([
      { hypothesis: SECRET, n: 3 },
      undefined,
      new Uint8Array([0, 1, 2, 255]),
    ]);
    expect(text(decoded[1]!.metadata?.encoding)).toBe('binary/null');
    expect(await codec.decode([])).toEqual([]);
  });

  it('after a rotation, decrypts what the old key encrypted and encrypts with the new key', async () => {
    const env = keyEnv('rotation');
    const { keyId: first } = await initKeyring(env);
    const running = codecFor(env); // a process started before the rotation
    const [old] = await running.encode([defaultPayloadConverter.toPayload('written before')]);

    const { keyId: second, previous } = await rotateKeyring(env);
    expect(previous).toBe(first);
    expect(second).not.toBe(first);
    expect(await listKeys(env)).toMatchObject({ current: second, ids: [first, second] });

    const restarted = codecFor(env);
    const [fresh] = await restarted.encode([defaultPayloadConverter.toPayload('written after')]);
    expect(text(fresh!.metadata?.[KEY_ID_METADATA])).toBe(second);
    expect(defaultPayloadConverter.fromPayload((await restarted.decode([old!]))[0]!)).toBe('written before');
    // The process that started before the rotation reads the new key when it first meets it.
    expect(defaultPayloadConverter.fromPayload((await running.decode([fresh!]))[0]!)).toBe('written after');
  });

  it('refuses tampered ciphertext, a swapped key id and an unknown key', async () => {
    const env = keyEnv('tamper');
    await initKeyring(env);
    const codec = codecFor(env);
    const [payload] = await codec.encode([defaultPayloadConverter.toPayload({ secret: SECRET })]);
    const flipped = Buffer.from(payload!.data!);
    flipped[20] = flipped[20]! ^ 0x01;
    await expect(codec.decode([{ ...payload, data: flipped }])).rejects.toThrow(/^payload_tampered: /);
    await expect(codec.decode([{ ...payload, data: flipped.subarray(0, 10) }])).rejects.toThrow(/payload_tampered/);

    const { keyId: other } = await rotateKeyring(env);
    const swapped = { ...payload, metadata: { ...payload!.metadata, [KEY_ID_METADATA]: Buffer.from(other) } };
    await expect(codecFor(env).decode([swapped])).rejects.toThrow(/payload_tampered/);
    const unknown = { ...payload, metadata: { ...payload!.metadata, [KEY_ID_METADATA]: Buffer.from('nope') } };
    await expect(codecFor(env).decode([unknown])).rejects.toThrow(/^unknown_key: .*"nope"/);
  });

  it('refuses payloads that are not encrypted, binary/null included', async () => {
    const env = keyEnv('plain');
    await initKeyring(env);
    const codec = codecFor(env);
    const plain: Payload[] = [
      defaultPayloadConverter.toPayload({ request: 'from a client without the key' }),
      defaultPayloadConverter.toPayload(undefined),
      { metadata: {}, data: Buffer.from('x') },
    ];
    for (const payload of plain) await expect(codec.decode([payload])).rejects.toThrow(/^payload_not_encrypted: /);
    await expect(codec.decode([plain[0]!])).rejects.toThrow('encoding "json/plain"');
  });

  it("passes only the Temporal server's own constant strings through unencrypted", async () => {
    const env = keyEnv('server-made');
    await initKeyring(env);
    const codec = codecFor(env);
    const serverMade = [
      defaultPayloadConverter.toPayload('ACTIVITY_ID_NOT_STARTED'),
      defaultPayloadConverter.toPayload('terminated by new runID: 0193a1c2-7b7e-7d0a-9f1e-2b3c4d5e6f70'),
    ];
    for (const payload of serverMade) expect(await codec.decode([payload])).toEqual([payload]);
    const lookalikes = [
      defaultPayloadConverter.toPayload('ACTIVITY_ID_NOT_STARTED and more'),
      defaultPayloadConverter.toPayload({ note: 'ACTIVITY_ID_NOT_STARTED' }),
      defaultPayloadConverter.toPayload('terminated by new runID: anything the sender likes'),
      { ...serverMade[0]!, metadata: { ...serverMade[0]!.metadata, messageType: Buffer.from('x') } },
    ];
    for (const payload of lookalikes) await expect(codec.decode([payload])).rejects.toThrow(/^payload_not_encrypted: /);
  });
});

describe('the payload keyring', () => {
  it('is created 0600 in a 0700 directory, once', async () => {
    const env = keyEnv('create');
    const { file } = await initKeyring(env);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    expect((await fs.stat(path.dirname(file))).mode & 0o777).toBe(0o700);
    await expect(initKeyring(env)).rejects.toThrow(/already exists .*expctl keys rotate/);
    expect((await ensureKeyring(env)).created).toBeUndefined();
    const fresh = keyEnv('ensure');
    expect((await ensureKeyring(fresh)).created?.file).toBe(fresh.EXPCTL_KEY_FILE);
  });

  it('lives in the state directory unless EXPCTL_KEY_FILE names another file', async () => {
    const home = path.join(dir, 'default-home');
    const { file } = await initKeyring({ EXPCTL_HOME: home });
    expect(file).toBe(path.join(home, 'keys', 'payload-keys.json'));
    expect((await loadKeyring({ EXPCTL_HOME: home, EXPCTL_KEY_FILE: '' })).origin).toBe(file);
  });

  it('refuses a key file that group or other may read, naming chmod 600', async () => {
    const env = keyEnv('mode');
    const { file } = await initKeyring(env);
    await fs.chmod(file, 0o644);
    await expect(loadKeyring(env)).rejects.toThrow(`mode 0644); run \`chmod 600 ${file}\``);
    await fs.chmod(file, 0o640);
    await expect(loadKeyring(env)).rejects.toThrow('chmod 600');
    await fs.chmod(file, 0o600);
    await expect(loadKeyring(env)).resolves.toBeDefined();
  });

  it('says how to get a keyring when there is none', async () => {
    const attempt = loadKeyring(keyEnv('missing'));
    await expect(attempt).rejects.toBeInstanceOf(KeyringMissingError);
    await expect(attempt).rejects.toThrow(/expctl keys init.*EXPCTL_KEY_FILE|EXPCTL_KEY_FILE.*expctl keys init/s);
    await expect(attempt).rejects.toThrow('EXPCTL_KEY_COMMAND');
  });

  it('explains what is wrong with a malformed keyring without ever quoting a key', () => {
    const key = Buffer.alloc(32, 7).toString('base64');
    const short = Buffer.alloc(16, 7).toString('base64');
    const cases: [unknown, RegExp][] = [
      [{ version: 2, current: 'a', keys: { a: key } }, /version: must be 1/],
      [{ version: 1, current: 'b', keys: { a: key } }, /current: names no key/],
      [{ version: 1, current: 'a', keys: { a: short } }, /keys\.a: must be the base64 of 32 bytes/],
      [{ version: 1, current: 'a', keys: {} }, /keys: is empty/],
      [{ version: 1, current: 'a', keys: { a: key }, extra: true }, /extra/],
      [{ version: 1, keys: { a: key } }, /current: must be a key id/],
    ];
    for (const [document, message] of cases) {
      let error: Error | undefined;
      try {
        parseKeyring(JSON.stringify(document), 'test');
      } catch (caught) {
        error = caught as Error;
      }
      expect(error?.message).toMatch(message);
      expect(error?.message).not.toContain(short);
      expect(error?.message).not.toContain(key);
    }
    expect(() => parseKeyring(`{"version":1,"keys":{"a":"${key}"`, 'test')).toThrow(
      /^the payload keyring test is not valid JSON$/,
    );
  });

  it('can come from EXPCTL_KEY_COMMAND, whose failures never show its output', async () => {
    const source = keyEnv('command');
    await initKeyring(source);
    const script = path.join(dir, 'print-keys.mjs');
    await fs.writeFile(
      script,
      [
        "import fs from 'node:fs';",
        "if (process.argv[2] === 'fail') { process.stdout.write('LEAKED'); console.error('vault sealed'); process.exit(3); }",
        "if (process.argv[2] === 'garbage') { process.stdout.write('LEAKED not json'); process.exit(0); }",
        'process.stdout.write(fs.readFileSync(process.argv[2]));',
      ].join('\n'),
    );
    const command = (arg: string) => ({ EXPCTL_KEY_COMMAND: `"${process.execPath}" "${script}" "${arg}"` });
    const fromCommand = await loadKeyring(command(source.EXPCTL_KEY_FILE!));
    const fromFile = await loadKeyring(source);
    expect(fromCommand.ids).toEqual(fromFile.ids);
    expect(fromCommand.derive('x')).toEqual(fromFile.derive('x'));
    expect(fromCommand.origin).toMatch(/^the output of EXPCTL_KEY_COMMAND/);

    const failed = loadKeyring(command('fail'));
    await expect(failed).rejects.toThrow(/exited with code 3:\nvault sealed/);
    await expect(failed).rejects.not.toThrow('LEAKED');
    const garbage = loadKeyring(command('garbage'));
    await expect(garbage).rejects.toThrow(/is not valid JSON$/);
    await expect(garbage).rejects.not.toThrow('LEAKED');
    await expect(loadKeyring({ EXPCTL_KEY_COMMAND: 'no-such-program-for-expctl' })).rejects.toThrow(/was not found/);
    await expect(loadKeyring({ ...command('x'), EXPCTL_KEY_FILE: source.EXPCTL_KEY_FILE })).rejects.toThrow(
      /both EXPCTL_KEY_FILE and EXPCTL_KEY_COMMAND/,
    );
    await expect(rotateKeyring(command(source.EXPCTL_KEY_FILE!))).rejects.toThrow(/comes from EXPCTL_KEY_COMMAND/);
  });

  it('lists key ids, never keys', async () => {
    const env = keyEnv('list');
    const { file } = await initKeyring(env);
    await rotateKeyring(env);
    const listed = JSON.stringify(await listKeys(env));
    const stored = JSON.parse(await fs.readFile(file, 'utf8')) as { keys: Record<string, string> };
    for (const value of Object.values(stored.keys)) expect(listed).not.toContain(value);
  });

  it('derives separate keys per purpose, and the same one again from a key id after a rotation', async () => {
    const env = keyEnv('derive');
    const { file } = await createKeyring(keyEnv('derive').EXPCTL_KEY_FILE!);
    const hash = await deriveKey('secret-hash', env);
    expect(hash.key).toHaveLength(32);
    expect((await deriveKey('secret-hash', env)).key.equals(hash.key)).toBe(true);
    expect((await deriveKey('something-else', env)).key.equals(hash.key)).toBe(false);
    const stored = JSON.parse(await fs.readFile(file, 'utf8')) as { keys: Record<string, string> };
    expect(hash.key.equals(Buffer.from(stored.keys[hash.keyId]!, 'base64'))).toBe(false);

    await rotateKeyring(env);
    const after = await loadKeyring(env);
    expect(after.derive('secret-hash').keyId).not.toBe(hash.keyId);
    expect(after.derive('secret-hash', hash.keyId).key.equals(hash.key)).toBe(true);
  });
});
