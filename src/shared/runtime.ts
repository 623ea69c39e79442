import { DefaultLogger, Runtime } from '@temporalio/worker';

let installed = false;

/**
 * Installs the Temporal worker runtime once per process: warnings and errors only (the SDK's
 * INFO lines drown the CLI's output), and no SDK signal handlers — expctl shuts down in order itself.
 */
export function installWorkerRuntime(
  level: 'WARN' | 'INFO' | 'DEBUG' = (process.env.EXPCTL_LOG_LEVEL as 'INFO') ?? 'WARN',
): void {
  if (installed) return;
  const print = new DefaultLogger(level);
  // Activity-only workers (GPU slots, host queue) legitimately poll no workflows; that warning is noise here.
  const logger = new DefaultLogger(level, (entry) => {
    if (!entry.message.startsWith('No workflows registered')) print.log(entry.level, entry.message, entry.meta);
  });
  Runtime.install({ logger, shutdownSignals: [] });
  installed = true;
}
