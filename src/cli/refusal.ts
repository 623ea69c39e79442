import { permissionDenied } from '../client/sign.js';
import { PERMISSION_DENIED_EXIT_CODE } from '../domain/authorization.js';
import { CliError } from './output.js';

/** A workflow's or update's permission_denied as the CLI's refusal (exit 6); any other error as it is. */
export function asRefusal(error: unknown): unknown {
  const denied = permissionDenied(error);
  return denied ? new CliError(denied, PERMISSION_DENIED_EXIT_CODE) : error;
}
