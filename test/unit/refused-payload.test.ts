import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter, type SerializationContext } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec, RefusalTolerantCodec } from '../../src/security/codec.js';
import { createKeyring, loadKeyring } from '../../src/security/keyring.js';
import { refusalAmong, refusalOf } from '../../src/shared/refused-payload.js';

let dir: string;
let ours: EncryptionCodec;
let theirs: EncryptionCodec;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-refused-'));
  const codecOf = async (name: string) =>
    EncryptionCodec.fromKeyring(
      await loadKeyring({ EXPCTL_KEY_FILE: (await createKeyring(path.join(dir, name, 'keys.json'))).file }),
    );
  [ours, theirs] = await Promise.all([codecOf('ours'), codecOf('theirs')]);
});
afterAll(async () => fs.rm(dir, { recursive: true, force: true }));

const workflow: SerializationContext = { type: 'workflow', namespace: 'default', workflowId: 'expctl-pool' };
const activity: SerializationContext = { type: 'activity', namespace: 'default', workflowId: 'w', isLocal: false };
const plain = defaultPayloadConverter.toPayload({ experimentId: 'x' });

describe('the workflow workers’ codec (RefusalTolerantCodec)', () => {
  it('hands a workflow a marked placeholder for a plaintext, foreign or tampered payload, and decodes the rest', async () => {
    const tolerant = new RefusalTolerantCodec(ours);
    const [foreign] = await theirs.encode([plain]);
    const [tampered] = await ours.encode([plain]);
    tampered!.data![20]! ^= 1;
    const [good] = await ours.encode([plain]);
    const decoded = (await tolerant.decode([plain, foreign!, tampered!, good!], workflow)).map((payload) =>
      defaultPayloadConverter.fromPayload(payload),
    );
    expect(decoded.map((value) => refusalOf(value)?.reason)).toEqual([
      'payload_not_encrypted',
      'unknown_key',
      'payload_tampered',
      undefined,
    ]);
    expect(decoded[3]).toEqual({ experimentId: 'x' });
    expect(refusalAmong(decoded)?.message).toMatch(
      /^payload_not_encrypted: refused a payload with encoding "json\/plain"/,
    );
  });

  it('still fails loudly outside a workflow’s own messages: activity payloads, and payloads with no context', async () => {
    const tolerant = new RefusalTolerantCodec(ours);
    await expect(tolerant.decode([plain], activity)).rejects.toThrow(/^payload_not_encrypted/);
    await expect(tolerant.decode([plain])).rejects.toThrow(/^payload_not_encrypted/);
    const [foreign] = await theirs.encode([plain]);
    await expect(tolerant.decode([foreign!], activity)).rejects.toThrow(/^unknown_key/);
  });

  it('takes only the marker’s exact shape as a refusal', () => {
    expect(refusalOf({ experimentId: 'x' })).toBeUndefined();
    expect(refusalOf(null)).toBeUndefined();
    expect(refusalOf({ __expctlRefusedPayload: 'text' })).toBeUndefined();
    expect(refusalAmong([1, 'a', { __expctlRefusedPayload: { reason: 'unknown_key', message: 'm' } }])).toEqual({
      reason: 'unknown_key',
      message: 'm',
    });
  });
});
