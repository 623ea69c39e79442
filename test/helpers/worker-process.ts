import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { poolStateQuery } from '../../src/workflows/definitions.js';
import type { TestStack } from './stack.js';
import { waitFor } from './wait.js';

const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));

/**
 * `expctl worker` as a process of its own, so that a test can kill, freeze or restart it: one CPU
 * slot (or its fake GPUs), its work directory <stack.workDir>/<host>, the stack's server. Returns once the pool has
 * it online, registered after the call (a restarted host counts only once it registered again).
 * Wrapped in an object: an execa subprocess is thenable, and returning it would await its exit.
 */
export async function startWorkerProcess(
  stack: TestStack,
  host: string,
  options: {
    args?: string[];
    env?: Record<string, string>;
    timeoutMs?: number;
    /** Its CPU slots (default 1); null: none, its GPUs as `nvidia-smi` (the fake one, by env) lists them. */
    cpuSlots?: number | null;
  } = {},
): Promise<{ child: ResultPromise }> {
  const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
  const before = (await pool.query(poolStateQuery).catch(() => undefined))?.hosts[host]?.registeredAt ?? 0;
  const child = execa(
    process.execPath,
    [
      EXPCTL,
      'worker',
      '--host',
      host,
      ...(options.cpuSlots === null ? [] : ['--cpu-slots', String(options.cpuSlots ?? 1)]),
      ...(options.args ?? []),
      '--work-dir',
      path.join(stack.workDir, host),
    ],
    {
      env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace, ...options.env },
      reject: false,
    },
  );
  await waitFor(async () => {
    const entry = (await pool.query(poolStateQuery).catch(() => undefined))?.hosts[host];
    return entry?.online === true && entry.registeredAt > before;
  }, options.timeoutMs ?? 90_000);
  return { child };
}
