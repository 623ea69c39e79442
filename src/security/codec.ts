import crypto from 'node:crypto';
import {
  defaultPayloadConverter,
  type DataConverter,
  type Payload,
  type PayloadCodec,
  type SerializationContext,
} from '@temporalio/common';
import proto from '@temporalio/proto';
import { describeSource, keySource, loadKeyring, type Keyring } from './keyring.js';
import { refusedPayloadPlaceholder } from '../shared/refused-payload.js';

const { Payload: PayloadMessage } = proto.temporal.api.common.v1;

/**
 * Payload encryption, the Temporal way: a PayloadCodec between the payload converter and the wire,
 * so workflow inputs, results, activity arguments, heartbeats, signals, queries, memos and failure
 * details reach the Temporal server (and its history, its database, its Web UI) only as
 * AES-256-GCM ciphertext. Search attributes (and headers) are not payloads the SDK passes through
 * codecs: they stay plaintext, so nothing secret may go there.
 *
 * Each payload is serialized whole (metadata and data, as the Payload proto), encrypted with a
 * random 12-byte IV under the keyring's current key, and sent as
 *   metadata: encoding = binary/encrypted, encryption-key-id = <key id>
 *   data:     IV (12) | ciphertext | GCM tag (16)
 * with the key id as additional authenticated data. Decoding picks the key the metadata names, so
 * payloads written before a rotation still decrypt.
 */
export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The label payload keys are derived under (keyring.ts: the keyring keys are never used directly). */
const PAYLOAD_KEY_LABEL = 'payload-aes-256-gcm';
/** A key id this process does not know reloads the keyring (a rotation elsewhere), at most this often. */
const RELOAD_INTERVAL_MS = 2000;

const utf8 = (bytes: Uint8Array | null | undefined) => (bytes ? Buffer.from(bytes).toString('utf8') : undefined);

/** A payload the codec must not (or cannot) decode; the message starts with a stable reason code. */
export class PayloadDecodeError extends Error {
  constructor(
    readonly reason: 'payload_not_encrypted' | 'unknown_key' | 'payload_tampered',
    message: string,
  ) {
    super(`${reason}: ${message}`);
  }
}

export function isEncrypted(payload: Payload): boolean {
  return utf8(payload.metadata?.encoding) === ENCRYPTED_ENCODING;
}

/**
 * Payloads the Temporal server writes itself as plain JSON, never from a client's data: the
 * details of an activity canceled before any worker started it ("ACTIVITY_ID_NOT_STARTED"), and of
 * a run terminated by a new run of its ID. Refusing them would fail the workflow's task on every
 * attempt (the cancellation reaches the workflow as a failure whose details it decodes), so a run
 * canceled while its training waited on a lost host would stall for ever. They carry nothing a
 * forger could use: the exact strings only, nothing else that is plaintext.
 */
const SERVER_MADE_PLAINTEXT: readonly RegExp[] = [
  /^"ACTIVITY_ID_NOT_STARTED"$/,
  /^"terminated by new runID: [0-9a-f-]{36}"$/,
];

export function isServerMadePlaintext(payload: Payload): boolean {
  if (utf8(payload.metadata?.encoding) !== 'json/plain') return false;
  if (Object.keys(payload.metadata ?? {}).length !== 1) return false;
  const data = utf8(payload.data) ?? '';
  return SERVER_MADE_PLAINTEXT.some((pattern) => pattern.test(data));
}

export class EncryptionCodec implements PayloadCodec {
  private keyring: Promise<Keyring>;
  /** When the keyring was last reloaded for an unknown key id (the first reload is never held back). */
  private lastLoad = 0;
  private readonly payloadKeys = new Map<string, Buffer>();

  /** `load` gives the keyring (unless `initial` is given), and again when a payload names a key not seen yet. */
  constructor(
    private readonly load: () => Promise<Keyring>,
    initial?: Keyring,
  ) {
    this.keyring = initial ? Promise.resolve(initial) : load();
  }

  static fromKeyring(keyring: Keyring): EncryptionCodec {
    return new EncryptionCodec(async () => keyring, keyring);
  }

  private payloadKey(keyring: Keyring, keyId: string): Buffer {
    let key = this.payloadKeys.get(keyId);
    if (!key) {
      key = keyring.derive(PAYLOAD_KEY_LABEL, keyId).key;
      this.payloadKeys.set(keyId, key);
    }
    return key;
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const keyring = await this.keyring;
    const keyId = keyring.current;
    const key = this.payloadKey(keyring, keyId);
    return payloads.map((payload) => {
      const iv = crypto.randomBytes(IV_BYTES);
      const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(keyId, 'utf8'));
      const plaintext = PayloadMessage.encode(payload).finish();
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return {
        metadata: {
          encoding: Buffer.from(ENCRYPTED_ENCODING, 'utf8'),
          [KEY_ID_METADATA]: Buffer.from(keyId, 'utf8'),
        },
        data: Buffer.concat([iv, ciphertext, cipher.getAuthTag()]),
      };
    });
  }

  /**
   * Refuses any payload that is not encrypted. A client without the keys (or any tool that speaks
   * to the Temporal server directly) could otherwise start experiments, signal the pool or complete
   * activities that the workers accept, and read nothing of it back. Nothing legitimate reaches
   * this decoder unencrypted: everything expctl sends goes through encode() above (`undefined` too:
   * the converter makes it a binary/null payload before the codec encrypts it); search attributes,
   * headers and the SDK core's own marker data (patched()) never pass through codecs. What the
   * Temporal server makes itself mostly copies what workers and clients sent, with one exception:
   * the few constant strings it writes as plain JSON (isServerMadePlaintext), which pass. The Web
   * UI's codec endpoint (codec-server.ts) is the one other place plaintext passes through, for
   * display.
   */
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return Promise.all(payloads.map((payload) => this.decodeOne(payload)));
  }

  private async decodeOne(payload: Payload): Promise<Payload> {
    if (isServerMadePlaintext(payload)) return payload;
    if (!isEncrypted(payload)) {
      const encoding = utf8(payload.metadata?.encoding) ?? 'none';
      throw new PayloadDecodeError(
        'payload_not_encrypted',
        `refused a payload with encoding "${encoding}": expctl accepts only payloads encrypted with its payload keys ` +
          '(binary/encrypted), so a client without the keyring cannot start or steer its work',
      );
    }
    const keyId = utf8(payload.metadata?.[KEY_ID_METADATA]);
    if (!keyId) throw new PayloadDecodeError('unknown_key', `an encrypted payload names no ${KEY_ID_METADATA}`);
    const keyring = await this.keyringWith(keyId);
    if (!keyring.has(keyId))
      throw new PayloadDecodeError(
        'unknown_key',
        `the payload was encrypted with key "${keyId}", which the payload keyring ${keyring.origin} does not have (keys: ${keyring.ids.join(', ')}); use the keyring of the deployment that wrote it`,
      );
    const data = Buffer.from(payload.data ?? []);
    if (data.length < IV_BYTES + TAG_BYTES)
      throw new PayloadDecodeError('payload_tampered', 'an encrypted payload is too short to hold an IV and a tag');
    try {
      const decipher = crypto.createDecipheriv(
        'aes-256-gcm',
        this.payloadKey(keyring, keyId),
        data.subarray(0, IV_BYTES),
      );
      decipher.setAAD(Buffer.from(keyId, 'utf8'));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      const plaintext = Buffer.concat([
        decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)),
        decipher.final(),
      ]);
      return PayloadMessage.decode(plaintext);
    } catch {
      throw new PayloadDecodeError(
        'payload_tampered',
        `an encrypted payload (key "${keyId}") failed authentication: it was altered, or encrypted with another key of the same id`,
      );
    }
  }

  /** The keyring, reloaded once (throttled) when it lacks `keyId`: a rotation made after this process started. */
  private async keyringWith(keyId: string): Promise<Keyring> {
    const keyring = await this.keyring;
    if (keyring.has(keyId) || Date.now() - this.lastLoad < RELOAD_INTERVAL_MS) return keyring;
    this.lastLoad = Date.now();
    const reloaded = this.load();
    // A failed reload keeps the keyring already loaded.
    this.keyring = reloaded.catch(() => keyring);
    return this.keyring;
  }
}

const codecs = new Map<string, Promise<EncryptionCodec>>();

/**
 * The codec of the keyring that `env` names (EXPCTL_KEY_COMMAND / EXPCTL_KEY_FILE / the state
 * directory), loaded once per process; rejects with a message saying how to get a keyring.
 */
export async function payloadCodec(env: NodeJS.ProcessEnv = process.env): Promise<EncryptionCodec> {
  const id = describeSource(keySource(env));
  let codec = codecs.get(id);
  if (!codec) {
    const load = () => loadKeyring(env);
    codec = load().then((keyring) => new EncryptionCodec(load, keyring));
    codecs.set(id, codec);
    codec.catch(() => codecs.delete(id));
  }
  return codec;
}

/**
 * The data converter every expctl client and worker uses (connection.ts `dataConverter(env)`):
 * the SDK's default payload converter, then encryption.
 */
export async function encryptingDataConverter(env: NodeJS.ProcessEnv = process.env): Promise<DataConverter> {
  return { payloadCodecs: [await payloadCodec(env)] };
}

/**
 * The codec of the workers that run workflows. What a workflow receives in its own context (its
 * start input, signals, updates, queries) and the codec refuses becomes a marked placeholder
 * (shared/refused-payload.ts) that the workflow drops, counts and audits
 * (workflows/refused-messages.ts): one plaintext signal from anyone who reaches the server's port
 * would otherwise fail the workflow's task on every attempt, and stall it for ever. Everything
 * else still fails loudly: activity results, heartbeats and failures (activity context), clients
 * decoding workflow results (they use the strict codec), and payloads with no context.
 */
export class RefusalTolerantCodec implements PayloadCodec {
  constructor(private readonly inner: PayloadCodec) {}

  encode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    return this.inner.encode(payloads, context);
  }

  async decode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    if (context?.type !== 'workflow') return this.inner.decode(payloads, context);
    return Promise.all(
      payloads.map(async (payload) => {
        try {
          const [decoded] = await this.inner.decode([payload], context);
          return decoded!;
        } catch (error) {
          if (!(error instanceof PayloadDecodeError)) throw error;
          return defaultPayloadConverter.toPayload(
            refusedPayloadPlaceholder({ reason: error.reason, message: error.message }),
          );
        }
      }),
    );
  }
}

/** `converter` with its codecs made tolerant of refused payloads in workflow context (RefusalTolerantCodec). */
export function workflowWorkerDataConverter(converter: DataConverter): DataConverter {
  return {
    ...converter,
    payloadCodecs: (converter.payloadCodecs ?? []).map((codec) => new RefusalTolerantCodec(codec)),
  };
}
