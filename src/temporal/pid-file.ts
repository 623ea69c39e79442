import { readFileSync } from 'node:fs';
import { isRunning, type ProcessIdentity } from '../shared/processes.js';

export { identityOf, isRunning, processStartTime, type ProcessIdentity } from '../shared/processes.js';

export function readJsonFile<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Sends SIGTERM, then SIGKILL after `graceMs`, and resolves once the process is gone. */
export async function stopProcess(identity: ProcessIdentity, graceMs = 10_000): Promise<void> {
  const signal = (name: NodeJS.Signals) => {
    try {
      if (isRunning(identity)) process.kill(identity.pid, name);
    } catch {
      // gone already
    }
  };
  signal('SIGTERM');
  // A stopped (SIGSTOP) process cannot act on SIGTERM until it runs again.
  signal('SIGCONT');
  const deadline = Date.now() + graceMs;
  while (isRunning(identity)) {
    if (Date.now() > deadline) signal('SIGKILL');
    await new Promise((r) => setTimeout(r, 100));
  }
}
