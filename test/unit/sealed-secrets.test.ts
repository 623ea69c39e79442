import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ENV_VALUE_BYTES } from '../../src/domain/bounds.js';
import {
  fieldsHoldingSecrets,
  publicRequest,
  runSecretValues,
  unsealedSecretNames,
  variableValueBytes,
} from '../../src/domain/redact.js';
import { ExperimentRequestSchema } from '../../src/domain/request.js';
import {
  ensureUnsealingKey,
  loadSealingKey,
  sealSecret,
  SealingKeyMissingError,
  unsealSecret,
  UnsealError,
  type UnsealingKey,
} from '../../src/security/sealed-secrets.js';

const VALUE = 'tok-0123456789abcdef-sealed';
const RUN = 'exp-seal-20261207-000000-abcdef';

let dir: string;
let key: UnsealingKey;
let files: { EXPCTL_SEAL_KEY_FILE: string; EXPCTL_SEAL_PUBLIC_KEY_FILE: string };

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-seal-'));
  files = {
    EXPCTL_SEAL_KEY_FILE: path.join(dir, 'keys', 'worker-seal.key'),
    EXPCTL_SEAL_PUBLIC_KEY_FILE: path.join(dir, 'keys', 'worker-seal.pub'),
  };
  const made = await ensureUnsealingKey(files);
  expect(made.created).toBe(files.EXPCTL_SEAL_KEY_FILE);
  key = made.key;
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

/** `sealed` with one byte of its encoded body changed at `at` (from the end). */
function tamper(sealed: string, at: number): string {
  const i = sealed.length - at;
  return `${sealed.slice(0, i)}${sealed[i] === 'A' ? 'B' : 'A'}${sealed.slice(i + 1)}`;
}

describe('sealed secrets', () => {
  it('open with the workers key for the run and name they were sealed for, and hold no trace of the value', async () => {
    const sealing = await loadSealingKey(files);
    expect(sealing.keyId).toBe(key.keyId);
    const sealed = sealSecret(sealing, RUN, 'API_TOKEN', VALUE);
    expect(sealed).toMatch(/^expctl-sealed:v1:[0-9a-f]{16}:[A-Za-z0-9_-]+$/);
    expect(sealed).not.toContain(VALUE);
    expect(Buffer.from(sealed.split(':').at(-1)!, 'base64url').includes(Buffer.from(VALUE))).toBe(false);
    expect(unsealSecret(key, RUN, 'API_TOKEN', sealed)).toBe(VALUE);
    // Each sealing is fresh (an ephemeral key and IV): equal values do not show as equal.
    expect(sealSecret(sealing, RUN, 'API_TOKEN', VALUE)).not.toBe(sealed);
  });

  it('are refused in another run, under another name, tampered, truncated, for another key or unsealed', async () => {
    const sealed = sealSecret(key, RUN, 'API_TOKEN', VALUE);
    expect(() => unsealSecret(key, `${RUN}x`, 'API_TOKEN', sealed)).toThrow(
      /API_TOKEN \(--secret\): the sealed value does not open for exp-seal-20261207-000000-abcdefx/,
    );
    expect(() => unsealSecret(key, RUN, 'OTHER_TOKEN', sealed)).toThrow(/OTHER_TOKEN \(--secret\): .*does not open/);
    for (const at of [2, 20, 40, sealed.split(':').at(-1)!.length - 2])
      expect(() => unsealSecret(key, RUN, 'API_TOKEN', tamper(sealed, at))).toThrow(UnsealError);
    expect(() => unsealSecret(key, RUN, 'API_TOKEN', sealed.slice(0, 60))).toThrow(/too short|malformed/);
    expect(() => unsealSecret(key, RUN, 'API_TOKEN', `${sealed}!`)).toThrow(/malformed/);

    const other = await ensureUnsealingKey({
      EXPCTL_SEAL_KEY_FILE: path.join(dir, 'other', 'worker-seal.key'),
      EXPCTL_SEAL_PUBLIC_KEY_FILE: path.join(dir, 'other', 'worker-seal.pub'),
    });
    expect(() => unsealSecret(other.key, RUN, 'API_TOKEN', sealed)).toThrow(
      new RegExp(`sealed for worker key ${key.keyId}, but this worker holds key ${other.key.keyId}`),
    );
    expect(() => unsealSecret(key, RUN, 'API_TOKEN', VALUE)).toThrow(/API_TOKEN \(--secret\) arrived unsealed/);
    // No refusal quotes the value.
    for (const bad of [VALUE, tamper(sealed, 5)]) {
      const refusal = (() => {
        try {
          unsealSecret(key, `${RUN}x`, 'API_TOKEN', bad);
          return 'opened';
        } catch (error) {
          return (error as Error).message;
        }
      })();
      expect(refusal).toMatch(/^API_TOKEN \(--secret\)/);
      expect(refusal).not.toContain(VALUE);
    }
  });

  it('keep the private half 0600 and load again unchanged; a submitter without the public half is told where to get it', async () => {
    expect((await fs.stat(files.EXPCTL_SEAL_KEY_FILE)).mode & 0o777).toBe(0o600);
    const again = await ensureUnsealingKey(files);
    expect(again.created).toBeUndefined();
    expect(again.key.keyId).toBe(key.keyId);
    await fs.chmod(files.EXPCTL_SEAL_KEY_FILE, 0o644);
    await expect(ensureUnsealingKey(files)).rejects.toThrow(/is open to other users \(mode 0644\)/);
    await fs.chmod(files.EXPCTL_SEAL_KEY_FILE, 0o600);
    const missing = path.join(dir, 'nowhere.pub');
    await expect(loadSealingKey({ EXPCTL_SEAL_PUBLIC_KEY_FILE: missing })).rejects.toThrow(SealingKeyMissingError);
    await expect(loadSealingKey({ EXPCTL_SEAL_PUBLIC_KEY_FILE: missing })).rejects.toThrow(
      /no worker sealing key at .*nowhere\.pub: .*Copy worker-seal\.pub/,
    );
  });

  it('are shown as [secret], never scrubbed for, and a plaintext value is named as unsealed', () => {
    const sealed = sealSecret(key, RUN, 'API_TOKEN', VALUE);
    const request = {
      hypothesis: 'h',
      description: '',
      repo: 'r',
      command: ['python3', 'train.py'],
      env: {},
      secrets: { API_TOKEN: sealed, PLAIN_TOKEN: VALUE },
    };
    expect(publicRequest(request, (v) => `digest-of-${v.length}`).secrets).toEqual({
      API_TOKEN: '[secret]',
      PLAIN_TOKEN: `hmac-sha256:digest-of-${VALUE.length}`,
    });
    expect(runSecretValues(request)).toEqual([VALUE]);
    expect(unsealedSecretNames(request)).toEqual(['PLAIN_TOKEN']);
  });

  it('are bounded by what they open to, so a secret at the bound still passes once sealed', async () => {
    const sealing = await loadSealingKey(files);
    for (const value of [VALUE, 'x'.repeat(MAX_ENV_VALUE_BYTES), 'é'.repeat(MAX_ENV_VALUE_BYTES / 2)]) {
      const sealed = sealSecret(sealing, RUN, 'API_TOKEN', value);
      expect(variableValueBytes(sealed)).toBe(Buffer.byteLength(value));
    }
    const atBound = sealSecret(sealing, RUN, 'API_TOKEN', 'x'.repeat(MAX_ENV_VALUE_BYTES));
    expect(Buffer.byteLength(atBound)).toBeGreaterThan(MAX_ENV_VALUE_BYTES);
    const request = { tag: 't', hypothesis: 'h', category: 'other', command: ['c'], repo: 'r', commit: 'a'.repeat(40) };
    expect(ExperimentRequestSchema.safeParse({ ...request, secrets: { API_TOKEN: atBound } }).success).toBe(true);
    const over = sealSecret(sealing, RUN, 'API_TOKEN', 'x'.repeat(MAX_ENV_VALUE_BYTES + 1));
    expect(ExperimentRequestSchema.safeParse({ ...request, secrets: { API_TOKEN: over } }).error?.message).toMatch(
      /the value is 32.0 KiB; a value has at most 32.0 KiB/,
    );
  });

  it('name every other field of a request that holds a secret value as written', () => {
    const request = {
      hypothesis: `try ${VALUE}`,
      description: '',
      repo: `https://x:${VALUE}@example.com/r.git`,
      command: ['python3', 'train.py', `--token=${VALUE}`],
      setup: ['true'],
      env: { OTHER: VALUE, FINE: 'x' },
      secrets: { API_TOKEN: VALUE },
    };
    expect(fieldsHoldingSecrets(request)).toEqual(['the hypothesis', 'the repository', 'the command', '--env OTHER']);
    expect(fieldsHoldingSecrets({ ...request, hypothesis: 'h', repo: 'r', command: ['c'], env: {} })).toEqual([]);
  });
});
