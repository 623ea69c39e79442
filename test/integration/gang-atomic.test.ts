import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { poolState } from '../../src/client/fleet.js';
import { CONTROL_TASK_QUEUE, POOL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import type { PoolSnapshot } from '../../src/workflows/definitions.js';
import { leaseCyclerWorkflow } from '../../src/workflows/lease-cycler.js';
import { startDyingOrchestrator } from '../helpers/dying-orchestrator.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

let stack: TestStack;
/**
 * The pool's workflow task timeout here: each SIGKILLed orchestrator leaves its grant task started,
 * and the next one gets it only when it times out (30 s where workers start the pool). Still far
 * above what one of this small pool's tasks takes, replay included.
 */
const POOL_TASK_TIMEOUT = '10s';
const children: ResultPromise[] = [];

/** An orchestrator process; with `dieAtGrant` N it SIGKILLs itself in the pool task that grants its Nth lease. */
async function startOrchestrator(dieAtGrant?: number): Promise<{ child: ResultPromise; log: string[] }> {
  const env: Record<string, string> = dieAtGrant ? { DIE_AT_GRANT: String(dieAtGrant) } : {};
  const started = await startDyingOrchestrator(stack, env, 'dying at grant');
  children.push(started.child);
  return started;
}

/**
 * Every lease of the pool is whole: the slots that hold it are exactly the set it names (one slot
 * for a 1-GPU lease), all on one host. Returns the number of GPUs each lease holds, by leaseId.
 */
function wholeLeases(pool: PoolSnapshot): Map<string, number> {
  const held = new Map<string, { slots: string[]; hosts: Set<string>; named: string[] | undefined }>();
  for (const entry of pool.slots) {
    if (!entry.lease) continue;
    const lease = held.get(entry.lease.leaseId) ?? { slots: [], hosts: new Set(), named: entry.lease.slotIds };
    lease.slots.push(entry.slot.slotId);
    lease.hosts.add(entry.slot.host);
    held.set(entry.lease.leaseId, lease);
  }
  const sizes = new Map<string, number>();
  for (const [leaseId, lease] of held) {
    expect([...lease.slots].sort(), `lease ${leaseId}`).toEqual([...(lease.named ?? lease.slots)].sort());
    expect(lease.hosts.size, `lease ${leaseId}`).toBe(1);
    sizes.set(leaseId, lease.slots.length);
  }
  return sizes;
}

beforeAll(async () => {
  stack = await startStack({ name: 'gang-atomic', orchestrator: false, gpuWorker: false });
  // Started as an operator may start it (the workers' registrations then find it running).
  await stack.client.workflow.start('poolWorkflow', {
    workflowId: POOL_WORKFLOW_ID,
    taskQueue: POOL_TASK_QUEUE,
    workflowTaskTimeout: POOL_TASK_TIMEOUT,
    args: [],
  });
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await stack?.stop();
});

describe('gang leases while the orchestrator is SIGKILLed mid-grant', () => {
  it('are never partly granted: each lease holds all of its GPUs or none', { timeout: 600_000 }, async () => {
    const first = await startOrchestrator(4);
    await stack.addGpuWorker({ host: 'atomic', fleet: 'eight-a100.csv' });
    // Four clients ask for 4, 2, 2 and 1 GPUs of the 8 over and over, holding each lease a moment.
    const gpus = [4, 2, 2, 1];
    const cycles = 12;
    const cyclers = await Promise.all(
      gpus.map((k, i) =>
        stack.client.workflow.start(leaseCyclerWorkflow, {
          workflowId: `atomic-cycler-${i}`,
          taskQueue: CONTROL_TASK_QUEUE,
          args: [
            {
              remaining: cycles,
              holdMs: 200,
              requirements: { acceleratorClass: 'a100', gpuMemoryMb: 0, runtimeTags: [], gpus: k },
            },
          ],
        }),
      ),
    );

    // Whatever orchestrator is alive answers for the pool: every state it shows has whole leases only.
    const seen: PoolSnapshot[] = [];
    let observing = true;
    const observer = (async () => {
      while (observing) {
        const pool = await poolState(stack.client).catch(() => undefined);
        if (pool) seen.push(pool);
        await new Promise((r) => setTimeout(r, 250));
      }
    })();

    // Three orchestrators die in a grant task, each a few grants after it started; the next one
    // re-runs that task from the history, which holds none of the dead task's leases.
    let dying = first;
    const deaths: string[] = [];
    for (const next of [3, 2, undefined]) {
      expect((await dying.child).signal).toBe('SIGKILL');
      deaths.push(/dying at grant \d+: \[[^\]]*\]/.exec(dying.log.join(''))![0]);
      dying = await startOrchestrator(next);
    }

    const results = await Promise.all(cyclers.map((cycler) => cycler.result()));
    // Each dead task waited out the timeout set above (kept across a continue-as-new), not the default.
    const config = (await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).describe()).raw.executionConfig;
    expect(`${config?.defaultWorkflowTaskTimeout?.seconds}s`).toBe(POOL_TASK_TIMEOUT);
    // Every lease a client received held exactly the GPUs it asked for.
    expect(results).toEqual(gpus.map((k) => ({ cycles, sizes: [k] })));
    observing = false;
    await observer;
    const gangs = seen.flatMap((state) => [...wholeLeases(state).values()]);
    for (const size of gangs) expect(gpus).toContain(size);
    expect(gangs.filter((size) => size > 1).length).toBeGreaterThan(0);
    console.log(`${deaths.join('; ')}; ${seen.length} pool states read, ${gangs.length} leases in them, all whole`);
    const pool = await poolState(stack.client);
    expect(wholeLeases(pool).size).toBe(0);
    // Granted once each: no grant of a dead task was counted.
    expect(pool.leasesGranted).toBe(gpus.length * cycles);
  });
});
