import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { contentDigest } from '../../src/security/content-digest.js';
import {
  ACTIONS,
  deniedMessage,
  permits,
  ROLES,
  type Action,
  type Certificate,
  type Role,
} from '../../src/domain/authorization.js';
import {
  credentialPath,
  ensureLocalAdmin,
  issueCredential,
  loadCredential,
  loadIssuerPublicKey,
  signRequest,
  verifyAuthorization,
  writeCredential,
  type Expected,
} from '../../src/security/credentials.js';

const home = () => ({ EXPCTL_HOME: fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-cred-')) });
const never = () => false;

describe('roles', () => {
  // The whole table, so a change to who may do what is a visible change to this test.
  const expected: Record<Role, Action[]> = {
    submitter: ['submit', 'push_code', 'fetch_code'],
    operator: [
      'submit',
      'cancel',
      'drain',
      'configure_tag',
      'configure_pool',
      'promote',
      'approve_promotion',
      'rollback_model',
      'add_data',
      'configure_dataset',
      'push_code',
      'fetch_code',
    ],
    worker: ['register_host', 'fetch_code'],
    admin: [...ACTIONS],
    producer: ['add_data'],
  };
  for (const role of ROLES)
    it(`${role} may do exactly ${expected[role].join(', ')}`, () => {
      const identity = { name: 'x', role, credentialId: 'c' };
      expect(ACTIONS.filter((action) => permits(identity, action, 'someone-else'))).toEqual(expected[role]);
    });

  it('a submitter cancels what it submitted, nothing else', () => {
    const alice = { name: 'alice', role: 'submitter' as const, credentialId: 'c' };
    expect(permits(alice, 'cancel', 'alice')).toBe(true);
    expect(permits(alice, 'cancel', 'bob')).toBe(false);
    expect(permits(alice, 'cancel', null)).toBe(false);
  });

  it('a refusal names the action, the caller and the role it needs', () => {
    expect(deniedMessage('drain', { name: 'alice', role: 'submitter', credentialId: 'c' })).toBe(
      'permission_denied: alice (submitter) may not drain: needs the operator or admin role',
    );
    expect(deniedMessage('submit', null, 'the request carries no credential')).toBe(
      'permission_denied: a caller without a valid credential may not submit: the request carries no credential',
    );
  });
});

describe('credentials and signed requests', () => {
  const setup = () => {
    const env = home();
    const admin = ensureLocalAdmin(env).credential;
    return { env, admin, issuer: loadIssuerPublicKey(env) };
  };
  const at = (iso: string) => new Date(iso);

  it('a request signed for an action, target and content verifies as its identity', () => {
    const { env, issuer } = setup();
    const alice = issueCredential({ name: 'alice', role: 'submitter' }, env);
    const digest = contentDigest({ tag: 't', n: 1 });
    const auth = signRequest(alice, { action: 'submit', target: 'exp-1', digest }, at('2026-01-01T00:00:00Z'));
    const expected = { action: 'submit' as const, target: 'exp-1', digest, acceptedAt: at('2026-01-01T00:01:00Z') };
    expect(verifyAuthorization(issuer, auth, expected, never)).toEqual({
      identity: { name: 'alice', role: 'submitter', credentialId: alice.certificate.id },
    });
  });

  it('refuses everything that is not exactly what was signed, by whom the fleet trusts, in time', () => {
    const { env, issuer } = setup();
    const alice = issueCredential({ name: 'alice', role: 'submitter' }, env);
    const stranger = ensureLocalAdmin(home()).credential;
    const signedAt = at('2026-01-01T00:00:00Z');
    const auth = signRequest(alice, { action: 'cancel', target: 'exp-1' }, signedAt);
    const ok: Expected = { action: 'cancel', target: 'exp-1', acceptedAt: signedAt };
    const refusal = (authorization: unknown, expected = ok, revoked: (c: Certificate) => boolean = never) => {
      const verdict = verifyAuthorization(issuer, authorization, expected, revoked);
      return 'refused' in verdict ? verdict.refused : 'accepted';
    };
    expect(refusal(auth)).toBe('accepted');
    expect(refusal(undefined)).toBe('the request carries no credential');
    expect(refusal({ ...auth, certificate: { ...auth.certificate, role: 'admin' } })).toBe(
      'the credential was not issued by this fleet',
    );
    expect(refusal(signRequest(stranger, { action: 'cancel', target: 'exp-1' }, signedAt))).toBe(
      'the credential was not issued by this fleet',
    );
    expect(refusal({ ...auth, target: 'exp-2' })).toBe('the request signature does not match its credential');
    expect(refusal(auth, { ...ok, target: 'exp-2' })).toBe('the request was signed for cancel on exp-1, not this one');
    expect(refusal(auth, { ...ok, digest: 'abc' })).toBe('the request changed after it was signed');
    expect(refusal(auth, { ...ok, acceptedAt: at('2026-01-01T00:16:00Z') })).toMatch(/signed too long before/);
    expect(refusal(auth, ok, (certificate) => certificate.name === 'alice')).toMatch(/was revoked/);
    expect(refusal({ ...auth, signature: 'bm90IGEgc2lnbmF0dXJl' })).toBe(
      'the request signature does not match its credential',
    );
    expect(refusal({ ...auth, certificate: { ...auth.certificate, publicKey: '!!' } })).toMatch(/not issued|malformed/);
  });

  it('an expired credential is refused', () => {
    const { env, issuer } = setup();
    const brief = issueCredential({ name: 'temp', role: 'operator', expiresInDays: 1 }, env);
    const later = new Date(Date.now() + 2 * 86_400_000);
    const auth = signRequest(brief, { action: 'drain', target: 'h' }, later);
    const verdict = verifyAuthorization(issuer, auth, { action: 'drain', target: 'h', acceptedAt: later }, never);
    expect(verdict).toEqual({ refused: expect.stringMatching(/expired at/) });
  });

  it('credential files are private and refused when others can read them', () => {
    const { env, admin } = setup();
    const file = credentialPath(env);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(loadCredential(env).certificate.id).toBe(admin.certificate.id);
    fs.chmodSync(file, 0o644);
    expect(() => loadCredential(env)).toThrow(/readable by others: run chmod 600/);
    const other = path.join(env.EXPCTL_HOME, 'x.json');
    writeCredential(other, admin);
    expect(fs.statSync(other).mode & 0o777).toBe(0o600);
    expect(() => loadCredential({ EXPCTL_HOME: path.join(env.EXPCTL_HOME, 'nowhere') })).toThrow(
      /no credential at .*expctl auth issue/,
    );
  });

  it('ensureLocalAdmin creates once and keeps what exists', () => {
    const env = home();
    const first = ensureLocalAdmin(env);
    const second = ensureLocalAdmin(env);
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.credential.certificate.id).toBe(first.credential.certificate.id);
    expect(first.credential.certificate.role).toBe('admin');
  });
});
