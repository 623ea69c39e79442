import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import {
  certificateMessage,
  IDENTITY_NAME_PATTERN,
  requestMessage,
  ROLES,
  SIGNATURE_WINDOW_MS,
  type Action,
  type Authorization,
  type Certificate,
  type Identity,
  type Role,
} from '../domain/authorization.js';
import { stateDir } from '../shared/settings.js';
import { AccessError } from './access-error.js';

/**
 * Credentials: an issuer key pair (kept by the admin, its public half by the orchestrator) signs
 * certificates; each holder signs its own requests. Ed25519 throughout, from node:crypto.
 */

const PRIVATE = 0o600;

export function keysDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir(env), 'keys');
}
export function issuerKeyPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.EXPCTL_ISSUER_KEY_FILE || path.join(keysDir(env), 'issuer.key');
}
export function issuerPublicKeyPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.EXPCTL_ISSUER_PUBLIC_KEY_FILE || path.join(keysDir(env), 'issuer.pub');
}
export function credentialPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.EXPCTL_CREDENTIAL_FILE || path.join(stateDir(env), 'credential.json');
}

function writePrivate(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // Written aside and renamed: a reader never sees half a key.
  const partial = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(partial, text, { mode: PRIVATE });
  fs.renameSync(partial, file);
}

/** Creates the issuer key pair unless it exists; returns whether it did. */
export function ensureIssuer(env: NodeJS.ProcessEnv = process.env): boolean {
  if (fs.existsSync(issuerKeyPath(env))) return false;
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  writePrivate(issuerPublicKeyPath(env), publicKey.export({ type: 'spki', format: 'pem' }).toString());
  writePrivate(issuerKeyPath(env), privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  return true;
}

function readKeyFile(file: string, what: string, hint: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new AccessError(`no ${what} at ${file}: ${hint}`);
    throw new AccessError(`cannot read the ${what} at ${file}: ${(error as Error).message}`);
  }
}

/** The public key requests are verified against (the orchestrator's trust root). */
export function loadIssuerPublicKey(env: NodeJS.ProcessEnv = process.env): crypto.KeyObject {
  const file = issuerPublicKeyPath(env);
  const hint = 'run `expctl auth init` (or `expctl dev`), or set EXPCTL_ISSUER_PUBLIC_KEY_FILE';
  return crypto.createPublicKey(readKeyFile(file, 'issuer public key', hint));
}

function loadIssuerPrivateKey(env: NodeJS.ProcessEnv): crypto.KeyObject {
  const file = issuerKeyPath(env);
  const hint = 'credentials are issued where the issuer key is (`expctl auth init` creates it)';
  return crypto.createPrivateKey(readKeyFile(file, 'issuer key', hint));
}

const CertificateSchema = z.strictObject({
  id: z.string().min(1).max(100),
  name: z.string().regex(IDENTITY_NAME_PATTERN),
  role: z.enum(ROLES),
  publicKey: z.string().min(1).max(200),
  issuedAt: z.string(),
  expiresAt: z.string().nullable(),
});

const CredentialFileSchema = z.strictObject({
  version: z.literal(1),
  certificate: CertificateSchema,
  certificateSignature: z.string().min(1),
  /** The holder's Ed25519 private key, PKCS#8 PEM. */
  privateKey: z.string().min(1),
});
export type Credential = z.output<typeof CredentialFileSchema>;

/** Signs a new credential with the issuer key: a fresh key pair for the holder and its certificate. */
export function issueCredential(
  options: { name: string; role: Role; expiresInDays?: number },
  env: NodeJS.ProcessEnv = process.env,
): Credential {
  if (!IDENTITY_NAME_PATTERN.test(options.name))
    throw new Error(`credential name "${options.name}" must be letters, digits, "_", ".", "@" or "-" (at most 128)`);
  const issuer = loadIssuerPrivateKey(env);
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const now = new Date();
  const certificate: Certificate = {
    id: `cred-${crypto.randomBytes(8).toString('hex')}`,
    name: options.name,
    role: options.role,
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    issuedAt: now.toISOString(),
    expiresAt: options.expiresInDays
      ? new Date(now.getTime() + options.expiresInDays * 86_400_000).toISOString()
      : null,
  };
  const certificateSignature = crypto
    .sign(null, Buffer.from(certificateMessage(certificate)), issuer)
    .toString('base64');
  return {
    version: 1,
    certificate,
    certificateSignature,
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

export function writeCredential(file: string, credential: Credential): void {
  writePrivate(file, JSON.stringify(credential, null, 2) + '\n');
}

/** The credential this process acts with: EXPCTL_CREDENTIAL_FILE, else credential.json in the state directory. */
export function loadCredential(env: NodeJS.ProcessEnv = process.env): Credential {
  const file = credentialPath(env);
  const hint = 'ask an admin for one (`expctl auth issue`) and set EXPCTL_CREDENTIAL_FILE, or start `expctl dev`';
  const text = readKeyFile(file, 'credential', hint);
  const mode = fs.statSync(file).mode & 0o077;
  if (mode !== 0) throw new AccessError(`the credential ${file} is readable by others: run chmod 600 ${file}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AccessError(`the credential ${file} is not JSON`);
  }
  const result = CredentialFileSchema.safeParse(parsed);
  if (!result.success) throw new AccessError(`the credential ${file} is malformed: ${result.error.issues[0]?.message}`);
  return result.data;
}

/** Signs one request with the holder's key. */
export function signRequest(
  credential: Credential,
  request: { action: Action; target: string; digest?: string },
  now = new Date(),
): Authorization {
  const unsigned = {
    certificate: credential.certificate,
    action: request.action,
    target: request.target,
    digest: request.digest ?? '',
    signedAt: now.toISOString(),
  };
  const key = crypto.createPrivateKey(credential.privateKey);
  return {
    ...unsigned,
    certificateSignature: credential.certificateSignature,
    signature: crypto.sign(null, Buffer.from(requestMessage(unsigned)), key).toString('base64'),
  };
}

/** What a verifier checks a request against: the action, target and digest it is about to act on. */
export interface Expected {
  action: Action;
  target: string;
  digest?: string;
  /** When the server accepted the request (a start's time, a signal's arrival). */
  acceptedAt: Date;
}

/** The certificate a signed request carries, if it is well formed (not yet verified). */
export function certificateOf(authorization: unknown): Certificate | null {
  const auth = authorization as Partial<Authorization> | null | undefined;
  if (!auth || typeof auth !== 'object') return null;
  const certificate = CertificateSchema.safeParse(auth.certificate);
  return certificate.success ? certificate.data : null;
}

/**
 * Checks a signed request: the issuer signed the certificate, it has not expired or been revoked,
 * the holder signed exactly this action, target and digest, within the signing window.
 * Returns the identity, or why not (never throws on bad input: it came from the wire).
 */
export function verifyAuthorization(
  issuer: crypto.KeyObject,
  authorization: unknown,
  expected: Expected,
  isRevoked: (certificate: Certificate) => boolean,
): { identity: Identity } | { refused: string } {
  const auth = authorization as Partial<Authorization> | null | undefined;
  if (!auth || typeof auth !== 'object') return { refused: 'the request carries no credential' };
  const certificate = CertificateSchema.safeParse(auth.certificate);
  if (!certificate.success || typeof auth.certificateSignature !== 'string' || typeof auth.signature !== 'string')
    return { refused: 'the request carries a malformed credential' };
  const cert = certificate.data;
  try {
    const certificateOk = crypto.verify(
      null,
      Buffer.from(certificateMessage(cert)),
      issuer,
      Buffer.from(auth.certificateSignature, 'base64'),
    );
    if (!certificateOk) return { refused: 'the credential was not issued by this fleet' };
    const holder = crypto.createPublicKey({ key: Buffer.from(cert.publicKey, 'base64'), format: 'der', type: 'spki' });
    const signed = {
      certificate: cert,
      action: auth.action as Action,
      target: String(auth.target),
      digest: String(auth.digest ?? ''),
      signedAt: String(auth.signedAt),
    };
    if (!crypto.verify(null, Buffer.from(requestMessage(signed)), holder, Buffer.from(auth.signature, 'base64')))
      return { refused: 'the request signature does not match its credential' };
  } catch {
    return { refused: 'the request carries a malformed credential' };
  }
  if (auth.action !== expected.action || auth.target !== expected.target)
    return { refused: `the request was signed for ${auth.action} on ${auth.target}, not this one` };
  if ((expected.digest ?? '') !== (auth.digest ?? '')) return { refused: 'the request changed after it was signed' };
  const signedAt = Date.parse(String(auth.signedAt));
  if (!Number.isFinite(signedAt) || Math.abs(expected.acceptedAt.getTime() - signedAt) > SIGNATURE_WINDOW_MS)
    return { refused: 'the request was signed too long before it arrived (replayed, or a clock far off)' };
  if (cert.expiresAt && Date.parse(cert.expiresAt) < expected.acceptedAt.getTime())
    return { refused: `the credential ${cert.id} expired at ${cert.expiresAt}` };
  if (isRevoked(cert)) return { refused: `the credential ${cert.id} (${cert.name}) was revoked` };
  return { identity: { name: cert.name, role: cert.role, credentialId: cert.id } };
}

/**
 * The local user's setup, as `expctl dev` and `expctl auth init` make it: the issuer key pair and
 * an admin credential for this user, each created only if missing.
 */
export function ensureLocalAdmin(env: NodeJS.ProcessEnv = process.env): { credential: Credential; created: boolean } {
  ensureIssuer(env);
  const file = credentialPath(env);
  if (fs.existsSync(file)) return { credential: loadCredential(env), created: false };
  const credential = issueCredential({ name: localUserName(), role: 'admin' }, env);
  writeCredential(file, credential);
  return { credential, created: true };
}

function localUserName(): string {
  let name = 'local';
  try {
    name = os.userInfo().username || name;
  } catch {
    // No passwd entry (some containers): the generic name will do.
  }
  return name.replace(/[^A-Za-z0-9_.@-]/g, '-').replace(/^[^A-Za-z0-9]/, 'u');
}
