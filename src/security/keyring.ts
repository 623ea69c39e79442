import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { z } from 'zod';
import { FlagError, splitCommandLine } from '../shared/command-line.js';
import { TAG_PATTERN } from '../domain/bounds.js';
import { ConfigurationError, stateDir } from '../shared/settings.js';
import { AccessError } from './access-error.js';
import { assertPrivateFile, ensurePrivateDir, PRIVATE_FILE } from './files.js';

/**
 * The payload keyring: the keys expctl encrypts Temporal payloads with (codec.ts) and derives its
 * other keys from. One JSON document,
 *   {"version":1,"current":"<id>","keys":{"<id>":"<base64 of 32 random bytes>"}}
 * from a 0600 file (EXPCTL_KEY_FILE, else <state dir>/keys/payload-keys.json), or printed by
 * EXPCTL_KEY_COMMAND (for a secret manager). New payloads use `current`; every key listed still
 * decrypts, so a rotation keeps the old keys.
 */

export const KEY_BYTES = 32;
/** Key ids name files and payload metadata: the tag rule. */
const KEY_ID = TAG_PATTERN;
const BASE64_32_BYTES = /^[A-Za-z0-9+/]{43}=$/;
/** How long a key command may take (a secret manager's CLI may be slow to answer). */
const KEY_COMMAND_TIMEOUT_MS = 60_000;

// Messages of our own throughout: an error must never echo a key's value.
const keyringSchema = z
  .object({
    version: z.literal(1, { error: 'must be 1' }),
    current: z
      .string({ error: 'must be a key id' })
      .regex(KEY_ID, { error: 'must be a key id (letters, digits, . _ -)' }),
    keys: z.record(
      z.string().regex(KEY_ID, { error: 'key ids are letters, digits, . _ - (up to 64)' }),
      z.string({ error: 'must be a base64 string' }).regex(BASE64_32_BYTES, {
        error: `must be the base64 of ${KEY_BYTES} bytes (44 characters; \`expctl keys init\` writes one)`,
      }),
      { error: 'must be an object of key id to base64 key' },
    ),
  })
  .strict()
  .superRefine((value, context) => {
    if (Object.keys(value.keys).length === 0) context.addIssue({ code: 'custom', path: ['keys'], message: 'is empty' });
    else if (!(value.current in value.keys))
      context.addIssue({ code: 'custom', path: ['current'], message: `names no key in "keys"` });
  });

export type KeyringDocument = z.infer<typeof keyringSchema>;

/** A key derived for one purpose, and the keyring key it came from (to find it again after a rotation). */
export interface DerivedKey {
  keyId: string;
  key: Buffer;
}

export class Keyring {
  constructor(
    /** The id of the key new payloads are encrypted with. */
    readonly current: string,
    private readonly keys: ReadonlyMap<string, Buffer>,
    /** Where it came from, for messages. */
    readonly origin: string,
  ) {}

  get ids(): string[] {
    return [...this.keys.keys()];
  }

  has(id: string): boolean {
    return this.keys.has(id);
  }

  /**
   * A 32-byte key for one purpose (`label`), derived with HKDF-SHA256 from a keyring key (the
   * current one by default), so no two uses share key material and the keyring keys themselves
   * are never used directly.
   */
  derive(label: string, keyId = this.current): DerivedKey {
    const key = this.keys.get(keyId);
    if (!key) throw new Error(`no key "${keyId}" in the payload keyring ${this.origin}`);
    return { keyId, key: Buffer.from(crypto.hkdfSync('sha256', key, Buffer.alloc(0), `expctl/${label}`, KEY_BYTES)) };
  }
}

/** Where the keyring comes from, per EXPCTL_KEY_COMMAND / EXPCTL_KEY_FILE. */
export type KeySource = { kind: 'file'; file: string } | { kind: 'command'; command: string[]; raw: string };

export function keyFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.EXPCTL_KEY_FILE || path.join(stateDir(env), 'keys', 'payload-keys.json'));
}

export function keySource(env: NodeJS.ProcessEnv = process.env): KeySource {
  const raw = env.EXPCTL_KEY_COMMAND?.trim();
  if (!raw) return { kind: 'file', file: keyFilePath(env) };
  if (env.EXPCTL_KEY_FILE)
    throw new ConfigurationError(
      'both EXPCTL_KEY_FILE and EXPCTL_KEY_COMMAND are set; set only the one the keyring comes from',
    );
  try {
    return { kind: 'command', command: splitCommandLine('EXPCTL_KEY_COMMAND', raw), raw };
  } catch (error) {
    if (error instanceof FlagError) throw new ConfigurationError(error.message);
    throw error;
  }
}

export function describeSource(source: KeySource): string {
  return source.kind === 'file' ? source.file : `the output of EXPCTL_KEY_COMMAND (${source.raw})`;
}

/** No keyring where one was expected; the message says how to get one. */
export class KeyringMissingError extends AccessError {
  constructor(readonly file: string) {
    super(
      `no payload keyring at ${file}. expctl encrypts what it sends to Temporal, so every client and worker of a ` +
        'deployment needs the same keyring: copy the file from the host that has it (keep it mode 0600), point ' +
        'EXPCTL_KEY_FILE at it, or set EXPCTL_KEY_COMMAND to a command that prints it (e.g. from a secret manager). ' +
        'For a new deployment, create one with `expctl keys init`. (`expctl dev` creates its own on first start.)',
    );
  }
}

/** Parses and checks a keyring document; `origin` names it in errors, which never quote a key. */
export function parseKeyring(text: string, origin: string): Keyring {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text around the error: it could quote a key.
    throw new AccessError(`the payload keyring ${origin} is not valid JSON`);
  }
  const parsed = keyringSchema.safeParse(json);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.map(String).join('.') || 'document'}: ${issue.message}`,
    );
    throw new AccessError(`the payload keyring ${origin} is not valid: ${problems.join('; ')}`);
  }
  const keys = new Map(Object.entries(parsed.data.keys).map(([id, value]) => [id, Buffer.from(value, 'base64')]));
  return new Keyring(parsed.data.current, keys, origin);
}

async function runKeyCommand(source: Extract<KeySource, { kind: 'command' }>): Promise<string> {
  const [program, ...args] = source.command as [string, ...string[]];
  try {
    const { stdout } = await execa(program, args, {
      stdin: 'ignore',
      stderr: 'pipe',
      timeout: KEY_COMMAND_TIMEOUT_MS,
      stripFinalNewline: false,
    });
    return stdout;
  } catch (error) {
    // Never the command's stdout: it may hold part of a keyring.
    const failure = error as { timedOut?: boolean; exitCode?: number; signal?: string; code?: string; stderr?: string };
    const how = failure.timedOut
      ? `did not finish within ${KEY_COMMAND_TIMEOUT_MS / 1000}s`
      : failure.code === 'ENOENT'
        ? `could not be started: ${program} was not found`
        : failure.exitCode !== undefined
          ? `exited with code ${failure.exitCode}`
          : `ended by ${failure.signal ?? failure.code ?? 'an error'}`;
    const stderr = (failure.stderr ?? '').trim().split('\n').slice(-5).join('\n');
    throw new AccessError(`EXPCTL_KEY_COMMAND (${source.raw}) ${how}${stderr ? `:\n${stderr}` : ''}`);
  }
}

/** Loads the keyring from its source; a file must exist and be private to its owner (0600). */
export async function loadKeyring(env: NodeJS.ProcessEnv = process.env): Promise<Keyring> {
  const source = keySource(env);
  if (source.kind === 'command') return parseKeyring(await runKeyCommand(source), describeSource(source));
  return readKeyringFile(source.file);
}

async function readKeyringFile(file: string): Promise<Keyring> {
  try {
    await assertPrivateFile(file, 'the payload keyring');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new KeyringMissingError(file);
    throw new AccessError((error as Error).message);
  }
  return parseKeyring(await fs.readFile(file, 'utf8'), file);
}

export class KeyringExistsError extends Error {
  constructor(readonly file: string) {
    super(
      `a payload keyring already exists at ${file}; \`expctl keys rotate\` adds a new key to it, and \`expctl keys list\` shows its keys`,
    );
  }
}

function newKeyId(taken: Iterable<string>): string {
  const used = new Set(taken);
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '');
  for (;;) {
    const id = `${day}-${crypto.randomBytes(3).toString('hex')}`;
    if (!used.has(id)) return id;
  }
}

const newKey = () => crypto.randomBytes(KEY_BYTES).toString('base64');
const serialize = (document: KeyringDocument) => `${JSON.stringify(document, null, 2)}\n`;

/**
 * Creates a keyring with one new key at `file` (0600, its directory 0700). Refuses to replace an
 * existing one: that would make everything encrypted with it unreadable.
 */
export async function createKeyring(file: string): Promise<{ file: string; keyId: string }> {
  await ensurePrivateDir(path.dirname(file));
  const keyId = newKeyId([]);
  const temp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(temp, serialize({ version: 1, current: keyId, keys: { [keyId]: newKey() } }), {
    ...PRIVATE_FILE,
    flag: 'wx',
  });
  try {
    // A hard link never replaces a file, so two creators never both win.
    await fs.link(temp, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyringExistsError(file);
    throw error;
  } finally {
    await fs.rm(temp, { force: true });
  }
  return { file, keyId };
}

/** The keyring file, or an error when the keyring comes from EXPCTL_KEY_COMMAND (it is not expctl's to change). */
function writableFile(env: NodeJS.ProcessEnv, action: string): string {
  const source = keySource(env);
  if (source.kind === 'command')
    throw new Error(
      `the payload keyring comes from EXPCTL_KEY_COMMAND (${source.raw}); ${action} it where that command reads it from`,
    );
  return source.file;
}

export async function initKeyring(env: NodeJS.ProcessEnv = process.env): Promise<{ file: string; keyId: string }> {
  return createKeyring(writableFile(env, 'create'));
}

/**
 * Adds a new key and makes it current; the old keys stay, so payloads they encrypted still
 * decrypt. The file is replaced atomically (write beside it, rename).
 */
export async function rotateKeyring(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ file: string; keyId: string; previous: string }> {
  const file = writableFile(env, 'rotate');
  const keyring = await readKeyringFile(file);
  const document = JSON.parse(await fs.readFile(file, 'utf8')) as KeyringDocument;
  const keyId = newKeyId(keyring.ids);
  const next: KeyringDocument = { version: 1, current: keyId, keys: { ...document.keys, [keyId]: newKey() } };
  const temp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(temp, serialize(next), { ...PRIVATE_FILE, flag: 'wx' });
  try {
    await fs.rename(temp, file);
  } catch (error) {
    await fs.rm(temp, { force: true });
    throw error;
  }
  return { file, keyId, previous: keyring.current };
}

/** The keyring's key ids and the current one; never a key's value. */
export async function listKeys(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ source: string; current: string; ids: string[] }> {
  const keyring = await loadKeyring(env);
  return { source: keyring.origin, current: keyring.current, ids: keyring.ids };
}

/**
 * The keyring for a stack that may make its own (`expctl dev`, the drills): a missing keyring
 * file is created; a key command or an existing file is loaded as it is.
 */
export async function ensureKeyring(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ keyring: Keyring; created?: { file: string; keyId: string } }> {
  const source = keySource(env);
  if (source.kind === 'file') {
    try {
      const created = await createKeyring(source.file);
      return { keyring: await loadKeyring(env), created };
    } catch (error) {
      if (!(error instanceof KeyringExistsError)) throw error;
    }
  }
  return { keyring: await loadKeyring(env) };
}

/**
 * A key for another use of expctl's (e.g. `deriveKey('secret-hash')` for keyed hashes of secrets),
 * derived from the current payload key; `keyId` names that key, so a value made with it can be
 * checked again after a rotation with `(await loadKeyring()).derive(label, keyId)`.
 */
export async function deriveKey(label: string, env: NodeJS.ProcessEnv = process.env): Promise<DerivedKey> {
  return (await loadKeyring(env)).derive(label);
}
