/**
 * Every exit code of the CLI, keyed by outcome (BRIEF §4, plus Ctrl-C), and the `error` code an
 * error object carries for each. Pure module: the CLI, the MCP server and the guide read it.
 */
export const EXIT_CODES = {
  /** A decision was made (keep or discard), or the command did what was asked. */
  decided: 0,
  /** An error of expctl itself. */
  internal_error: 1,
  /** The request (or a setting) is invalid; nothing ran. */
  validation_failed: 2,
  /** The run failed: command_failed, oom, timed_out. */
  run_failed: 3,
  /** Infrastructure: worker_lost, retry_exhausted, gpu_failed, data_unavailable, or the stack cannot be reached. */
  infrastructure: 4,
  /** Canceled by an operator. */
  canceled: 5,
  /** A refusal, or a credential or keyring that is missing, unreadable or not this fleet's. */
  permission_denied: 6,
  /** Ctrl-C (or SIGTERM) of a command that waits: the run goes on; `expctl wait ID` picks it up. */
  interrupted: 130,
} as const;

export type ExitOutcome = keyof typeof EXIT_CODES;

/** The `error` of `{"error": CODE, "message": …}` for an error that ends with `exitCode`. */
export function errorCodeFor(exitCode: number): string {
  switch (exitCode) {
    case EXIT_CODES.validation_failed:
      return 'validation_failed';
    case EXIT_CODES.infrastructure:
      return 'unavailable';
    case EXIT_CODES.permission_denied:
      return 'permission_denied';
    case EXIT_CODES.interrupted:
      return 'interrupted';
    default:
      return 'internal_error';
  }
}
