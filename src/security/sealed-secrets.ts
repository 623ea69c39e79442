import crypto, { type KeyObject } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isSealedSecret, SEALED_SECRET_PREFIX } from '../domain/redact.js';
import { stateDir } from '../shared/settings.js';
import { AccessError } from './access-error.js';
import { assertPrivateFile, createExclusive, ensurePrivateDir, PRIVATE_FILE } from './files.js';

/**
 * `--secret` values sealed for the fleet's GPU workers, so that the payload keyring (which every
 * submitter holds) does not open them in Temporal's history. The workers share one X25519 key
 * pair: the private half (0600) only on GPU hosts, the public half with every submitter.
 *
 * A value is sealed to the workers' public key with an ephemeral X25519 key (ECDH), HKDF-SHA256
 * and AES-256-GCM, and travels as
 *   expctl-sealed:v1:<key id>:<base64url of ephemeral public key (32) | IV (12) | ciphertext | tag (16)>
 * The key id is a digest of the workers' public key (which pair to open it with); the experiment
 * ID and the variable's name are associated data, so a sealed value opens only in the run and
 * under the name it was sealed for: copied into another run's request, it is refused.
 */

const VERSION = 'v1';
const EPHEMERAL_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_ID = /^[0-9a-f]{16}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** The workers' private key file: only GPU hosts have it. */
export function sealKeyPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.EXPCTL_SEAL_KEY_FILE || path.join(stateDir(env), 'keys', 'worker-seal.key'));
}

/** The workers' public key file: every submitter has it (it is no secret). */
export function sealPublicKeyPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.EXPCTL_SEAL_PUBLIC_KEY_FILE || path.join(stateDir(env), 'keys', 'worker-seal.pub'));
}

/** A public key to seal for, and its id (a digest of the key, so a mismatch can be named). */
export interface SealingKey {
  keyId: string;
  publicKey: KeyObject;
}

/** The workers' key pair, as a GPU worker holds it in memory. */
export interface UnsealingKey extends SealingKey {
  privateKey: KeyObject;
}

const rawPublicKey = (key: KeyObject) => Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');

function keyIdOf(publicKey: KeyObject): string {
  return crypto.createHash('sha256').update(rawPublicKey(publicKey)).digest('hex').slice(0, 16);
}

function sealingKey(publicKey: KeyObject): SealingKey {
  if (publicKey.asymmetricKeyType !== 'x25519') throw new Error('the sealing key is not an X25519 key');
  return { keyId: keyIdOf(publicKey), publicKey };
}

/** What binds a sealed value to its run and name (GCM associated data). */
const associatedData = (keyId: string, experimentId: string, name: string) =>
  Buffer.from(`expctl-sealed-secret/${VERSION}\0${keyId}\0${experimentId}\0${name}`, 'utf8');

/** The AES key of one sealed value: HKDF over the ECDH secret, salted with both public keys. */
function contentKey(shared: Buffer, ephemeral: Buffer, recipient: Buffer): Buffer {
  const salt = Buffer.concat([ephemeral, recipient]);
  return Buffer.from(crypto.hkdfSync('sha256', shared, salt, `expctl/sealed-secret/${VERSION}`, 32));
}

/** Seals `value` of variable `name` for run `experimentId`; only the workers' private key opens it. */
export function sealSecret(key: SealingKey, experimentId: string, name: string, value: string): string {
  const ephemeral = crypto.generateKeyPairSync('x25519');
  const ephemeralRaw = rawPublicKey(ephemeral.publicKey);
  const shared = crypto.diffieHellman({ privateKey: ephemeral.privateKey, publicKey: key.publicKey });
  const iv = crypto.randomBytes(IV_BYTES);
  const cipher = crypto.createCipheriv(
    'aes-256-gcm',
    contentKey(shared, ephemeralRaw, rawPublicKey(key.publicKey)),
    iv,
  );
  cipher.setAAD(associatedData(key.keyId, experimentId, name));
  const body = Buffer.concat([ephemeralRaw, iv, cipher.update(value, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${SEALED_SECRET_PREFIX}${key.keyId}:${body.toString('base64url')}`;
}

/**
 * A sealed value this worker cannot open; the message names the variable and the cause, never a
 * value (and says "NAME (--secret)": scrubbing takes the word after "secret" for a value).
 */
export class UnsealError extends Error {}

/** Opens a value sealed by `sealSecret` for this run and name, or throws UnsealError. */
export function unsealSecret(key: UnsealingKey, experimentId: string, name: string, sealed: string): string {
  if (!isSealedSecret(sealed))
    throw new UnsealError(
      `${name} (--secret) arrived unsealed; a client of this version seals every secret for the workers (submit it again with it)`,
    );
  const [keyId = '', encoded = ''] = sealed.slice(SEALED_SECRET_PREFIX.length).split(':');
  if (!KEY_ID.test(keyId) || !BASE64URL.test(encoded))
    throw new UnsealError(`${name} (--secret): the sealed value is malformed`);
  if (keyId !== key.keyId)
    throw new UnsealError(
      `${name} (--secret) was sealed for worker key ${keyId}, but this worker holds key ${key.keyId}; ` +
        'every GPU host needs the same worker-seal.key (see "Several hosts" in docs/operating.md)',
    );
  const body = Buffer.from(encoded, 'base64url');
  if (body.length < EPHEMERAL_BYTES + IV_BYTES + TAG_BYTES)
    throw new UnsealError(`${name} (--secret): the sealed value is too short`);
  const ephemeralRaw = body.subarray(0, EPHEMERAL_BYTES);
  const iv = body.subarray(EPHEMERAL_BYTES, EPHEMERAL_BYTES + IV_BYTES);
  const ciphertext = body.subarray(EPHEMERAL_BYTES + IV_BYTES, body.length - TAG_BYTES);
  try {
    const ephemeral = crypto.createPublicKey({
      key: { kty: 'OKP', crv: 'X25519', x: ephemeralRaw.toString('base64url') },
      format: 'jwk',
    });
    const shared = crypto.diffieHellman({ privateKey: key.privateKey, publicKey: ephemeral });
    const decipher = crypto.createDecipheriv(
      'aes-256-gcm',
      contentKey(shared, ephemeralRaw, rawPublicKey(key.publicKey)),
      iv,
    );
    decipher.setAAD(associatedData(keyId, experimentId, name));
    decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
  } catch {
    throw new UnsealError(
      `${name} (--secret): the sealed value does not open for ${experimentId} (sealed for another run or name, or altered)`,
    );
  }
}

/** Every sealed value of a request's `secrets`, opened for its run (in memory, on the worker). */
export function unsealSecrets(
  key: UnsealingKey,
  experimentId: string,
  secrets: Readonly<Record<string, string>>,
): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secrets).map(([name, sealed]) => [name, unsealSecret(key, experimentId, name, sealed)]),
  );
}

/** Seals every value of `secrets` for run `experimentId`. */
export function sealSecrets(
  key: SealingKey,
  experimentId: string,
  secrets: Readonly<Record<string, string>>,
): Record<string, string> {
  return Object.fromEntries(
    Object.entries(secrets).map(([name, value]) => [name, sealSecret(key, experimentId, name, value)]),
  );
}

/** No public key to seal with where a submitter looks for one; the message says how to get it. */
export class SealingKeyMissingError extends AccessError {
  constructor(readonly file: string) {
    super(
      `no worker sealing key at ${file}: --secret values are sealed for the fleet's GPU workers. Copy worker-seal.pub ` +
        "from a GPU host's key directory (it is public), or point EXPCTL_SEAL_PUBLIC_KEY_FILE at it. " +
        '(`expctl dev` and `expctl worker` create the pair on first start.)',
    );
  }
}

function parsePublicKey(text: string, origin: string): SealingKey {
  try {
    return sealingKey(crypto.createPublicKey(text));
  } catch {
    throw new AccessError(`the worker sealing key ${origin} is not an X25519 public key (PEM)`);
  }
}

/** The public key a submitter seals with. */
export async function loadSealingKey(env: NodeJS.ProcessEnv = process.env): Promise<SealingKey> {
  const file = sealPublicKeyPath(env);
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new SealingKeyMissingError(file);
    throw error;
  }
  return parsePublicKey(text, file);
}

async function readUnsealingKey(file: string): Promise<UnsealingKey> {
  await assertPrivateFile(file, 'the worker sealing key');
  let privateKey: KeyObject;
  try {
    privateKey = crypto.createPrivateKey(await fs.readFile(file, 'utf8'));
  } catch {
    throw new AccessError(`the worker sealing key ${file} is not a private key (PEM)`);
  }
  if (privateKey.asymmetricKeyType !== 'x25519')
    throw new AccessError(`the worker sealing key ${file} is not an X25519 private key`);
  return { ...sealingKey(crypto.createPublicKey(privateKey)), privateKey };
}

/**
 * The workers' key pair for a GPU worker: loaded from its key file, or made there on a host that
 * has none (with the public half beside it, or where EXPCTL_SEAL_PUBLIC_KEY_FILE says, when that
 * file is missing). `created` names the file when it was made.
 */
export async function ensureUnsealingKey(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ key: UnsealingKey; created?: string }> {
  const file = sealKeyPath(env);
  await ensurePrivateDir(path.dirname(file));
  const pair = crypto.generateKeyPairSync('x25519');
  const made = await createExclusive(file, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  const key = await readUnsealingKey(file);
  const publicFile = sealPublicKeyPath(env);
  await ensurePrivateDir(path.dirname(publicFile));
  await createExclusive(publicFile, key.publicKey.export({ type: 'spki', format: 'pem' }).toString());
  return { key, ...(made ? { created: file } : {}) };
}
