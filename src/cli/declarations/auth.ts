import type { Command } from 'commander';
import { jsonOption, lazy, positiveInt } from '../options.js';
import { singleOption } from '../parse.js';

/** The `expctl` commands of auth: names, options and help; each action loads its module when it runs. */
const load = () => import('../commands/auth.js');
const authInitCommand = lazy(load, 'authInitCommand');
const authIssueCommand = lazy(load, 'authIssueCommand');
const authRevokeCommand = lazy(load, 'authRevokeCommand');
const authWhoamiCommand = lazy(load, 'authWhoamiCommand');

export function declareAuth(program: Command): void {
  const auth = program.command('auth').description('credentials: who may submit, cancel, drain, register hosts');
  auth
    .command('init')
    .description("create the fleet's issuer key and this user's admin credential where missing (expctl dev does this)")
    .addOption(jsonOption())
    .action(authInitCommand);
  auth
    .command('issue')
    .description('issue a credential (needs the issuer key): roles submitter, operator, worker, admin, producer')
    .requiredOption('--name <name>', 'who holds it (a person, an agent, a worker host)', singleOption('--name'))
    .requiredOption('--role <role>', 'submitter, operator, worker, admin or producer', singleOption('--role'))
    .option('--out <file>', 'where to write it (mode 0600; default NAME.credential.json)', singleOption('--out'))
    .option('--expires-days <n>', 'valid for this many days (default: until revoked)', positiveInt('--expires-days'))
    .addOption(jsonOption())
    .action(authIssueCommand);
  auth
    .command('revoke')
    .description('revoke a credential by id, or with --name every credential of that name issued so far')
    .argument('<credential>', 'credential id (cred-...), or a name with --name')
    .option('--name', 'the argument is a name')
    .addOption(jsonOption())
    .action(authRevokeCommand);
  auth
    .command('whoami')
    .description('the identity and role this shell acts as')
    .addOption(jsonOption())
    .action(authWhoamiCommand);
}
