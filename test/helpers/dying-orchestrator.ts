import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { inject } from 'vitest';
import type { TestStack } from './stack.js';
import { waitFor } from './wait.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/orchestrator-dies-after-write.ts', import.meta.url));

/**
 * An orchestrator process of the stack that SIGKILLs itself where `env` says (DIE_AFTER an activity,
 * DIE_AT_GRANT a lease), once it polls. One that dies before it polls is an error, unless its log
 * already says `diedAs` (it may die at once, on work that waited for it).
 */
export async function startDyingOrchestrator(
  stack: TestStack,
  env: Record<string, string>,
  diedAs?: string,
): Promise<{ child: ResultPromise; log: string[] }> {
  const log: string[] = [];
  const child = execa(process.execPath, ['--import', 'tsx', FIXTURE], {
    env: {
      TEMPORAL_ADDRESS: stack.address,
      TEMPORAL_NAMESPACE: stack.namespace,
      EXPCTL_CATALOG: stack.catalogPath,
      EXPCTL_DATA_DIR: stack.dataDir,
      WORKFLOW_BUNDLE: inject('workflowBundleFile'),
      ...env,
    },
    reject: false,
  });
  child.stderr?.on('data', (chunk: Buffer) => log.push(String(chunk)));
  await waitFor(async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      if (diedAs !== undefined && log.join('').includes(diedAs)) return true;
      throw new Error(`the orchestrator exited while starting:\n${log.join('')}`);
    }
    return log.join('').includes('orchestrator fixture: polling');
  }, 120_000);
  return { child, log };
}
