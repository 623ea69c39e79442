import { EXIT_CODES } from '../domain/exit-codes.js';
import { AccessError } from '../security/access-error.js';
import { PayloadDecodeError } from '../security/codec.js';
import { ConfigurationError } from '../shared/settings.js';
import { noStackHint, stackLocation } from '../shared/stack.js';
import { StackUnreachableError } from '../temporal/connection.js';
import { CliError } from './output.js';

/** What ended a command, as an agent reads it: `{"error": code, "message": …}` and the exit code. */
export interface Failure {
  code: string;
  exitCode: number;
  message: string;
}

/** The first error in `error`'s cause chain that is a `type` (Temporal wraps what it could not decode). */
function found<T extends Error>(error: unknown, type: abstract new (...args: never[]) => T): T | undefined {
  for (let at = error, depth = 0; at instanceof Error && depth < 10; at = at.cause, depth++) {
    if (at instanceof type) return at;
  }
  return undefined;
}

/** Where the stack was looked for only in the current directory, the message says how to find one. */
function withStackHint(message: string): string {
  return stackLocation()?.source === 'current directory' ? `${message}\n${noStackHint()}` : message;
}

/** Classifies an error that ended a command: a refusal, a setting, an unreachable stack, or a bug. */
export function failureOf(error: unknown): Failure {
  if (error instanceof CliError) return { code: error.code, exitCode: error.exitCode, message: error.message };
  const denied = found(error, AccessError);
  if (denied)
    return {
      code: 'permission_denied',
      exitCode: EXIT_CODES.permission_denied,
      message: withStackHint(denied.message),
    };
  const undecodable = found(error, PayloadDecodeError);
  if (undecodable?.reason === 'unknown_key')
    return { code: 'permission_denied', exitCode: EXIT_CODES.permission_denied, message: undecodable.message };
  const setting = found(error, ConfigurationError);
  if (setting)
    return { code: 'invalid_configuration', exitCode: EXIT_CODES.validation_failed, message: setting.message };
  const unreachable = found(error, StackUnreachableError);
  if (unreachable)
    return { code: 'unavailable', exitCode: EXIT_CODES.infrastructure, message: withStackHint(unreachable.message) };
  return {
    code: 'internal_error',
    exitCode: EXIT_CODES.internal_error,
    message: (error as Error)?.message ?? String(error),
  };
}
