import path from 'node:path';
import { revokeCredential } from '../../client/credentials.js';
import { asRefusal } from '../refusal.js';
import { IDENTITY_NAME_PATTERN, PERMISSION_DENIED_EXIT_CODE, ROLES, type Role } from '../../domain/authorization.js';
import {
  credentialPath,
  ensureLocalAdmin,
  issueCredential,
  loadCredential,
  writeCredential,
} from '../../security/credentials.js';
import { connectClient } from '../../temporal/connection.js';
import { CliError, printJson, safeText, wantsJson } from '../output.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';

/** `auth init`: the issuer key pair and this user's admin credential, where missing (what `expctl dev` does). */
export async function authInitCommand(options: { json?: boolean }): Promise<void> {
  const { credential, created } = ensureLocalAdmin();
  const summary = {
    credential: credentialPath(),
    name: credential.certificate.name,
    role: credential.certificate.role,
    id: credential.certificate.id,
    created,
  };
  if (wantsJson(options)) return printJson(summary);
  console.log(
    `${created ? 'created' : 'kept'} ${summary.credential}: ${summary.name} (${summary.role}, ${summary.id})`,
  );
}

/** `auth issue`: a new credential, signed with the issuer key (so only where the admin keeps it). */
export async function authIssueCommand(options: {
  name: string;
  role: string;
  out?: string;
  expiresDays?: number;
  json?: boolean;
}): Promise<void> {
  if (!(ROLES as readonly string[]).includes(options.role))
    throw new CliError(
      `--role must be one of ${ROLES.join(', ')}, got "${safeText(options.role)}"`,
      EXIT_CODES.validation_failed,
    );
  if (!IDENTITY_NAME_PATTERN.test(options.name))
    throw new CliError(
      `--name must be letters, digits, "_", ".", "@" or "-" (at most 128)`,
      EXIT_CODES.validation_failed,
    );
  let credential;
  try {
    credential = issueCredential({
      name: options.name,
      role: options.role as Role,
      expiresInDays: options.expiresDays,
    });
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  const out = path.resolve(options.out ?? `${options.name}.credential.json`);
  writeCredential(out, credential);
  const summary = { file: out, ...credential.certificate };
  if (wantsJson(options)) return printJson(summary);
  console.log(
    `issued ${summary.id} to ${summary.name} (${summary.role}) in ${out} (mode 0600); ` +
      `its holder sets EXPCTL_CREDENTIAL_FILE to it`,
  );
}

/** `auth revoke`: refuses a credential (by id) or every credential of a name issued so far, from now on. */
export async function authRevokeCommand(target: string, options: { name?: boolean; json?: boolean }): Promise<void> {
  const credential = options.name ? `name:${target}` : target;
  const client = await connectClient();
  try {
    const result = await revokeCredential(client, credential);
    if (wantsJson(options)) return printJson(result);
    console.log(`revoked ${safeText(result.revoked)} (by ${safeText(result.by)})`);
  } catch (error) {
    throw asRefusal(error);
  }
}

/** `auth whoami`: the identity this shell acts as. */
export async function authWhoamiCommand(options: { json?: boolean }): Promise<void> {
  let credential;
  try {
    credential = loadCredential();
  } catch (error) {
    throw new CliError((error as Error).message, PERMISSION_DENIED_EXIT_CODE);
  }
  const summary = { file: credentialPath(), ...credential.certificate };
  if (wantsJson(options)) return printJson(summary);
  console.log(
    `${summary.name} (${summary.role}), credential ${summary.id} from ${summary.file}` +
      (summary.expiresAt ? `, expires ${summary.expiresAt}` : ''),
  );
}
