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
  // Activity-only workers (GPU slots, host queue) legitimately poll no workflows, and the pool's
  // worker no activities; those warnings are noise here.
  const expected = ['No workflows registered', 'No activities registered'];
  const logger = new DefaultLogger(level, (entry) => {
    if (!expected.some((start) => entry.message.startsWith(start))) print.log(entry.level, entry.message, entry.meta);
  });
  Runtime.install({ logger, shutdownSignals: [] });
  installed = true;
}
