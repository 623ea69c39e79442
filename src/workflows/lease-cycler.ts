import {
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import { LEASE_REQUEST_RENEWAL_MS } from '../domain/limits.js';
import type { Requirements } from '../domain/request.js';
import { POOL_WORKFLOW_ID } from '../shared/constants.js';
import { leaseGrantedSignal, releaseLeaseSignal, requestLeaseSignal, type Lease } from './definitions.js';

const CYCLES_PER_RUN = 100;

export interface LeaseCyclerInput {
  remaining: number;
  /** What each cycle asks for; `gpus` > 1 asks for gang leases. */
  requirements: Requirements;
  /** How long each lease is held before it is released (none: released at once). */
  holdMs?: number;
  done?: number;
  /** The slot counts of the leases received so far (each distinct count once). */
  sizes?: number[];
}

/**
 * Pool diagnostics: acquires and releases a lease `remaining` times through the real protocol,
 * as an experiment would, without training. The benchmark, the history-bound test and the
 * atomic-grant test use it; it answers how many GPUs each lease it received held.
 */
export async function leaseCyclerWorkflow(input: LeaseCyclerInput): Promise<{ cycles: number; sizes: number[] }> {
  const pool = getExternalWorkflowHandle(POOL_WORKFLOW_ID);
  const experimentId = workflowInfo().workflowId;
  let lease: Lease | undefined;
  // A lease told twice (asked again while its grant was on its way) is taken once.
  let lastLeaseId: string | undefined;
  setHandler(leaseGrantedSignal, (granted) => {
    if (granted.leaseId !== lastLeaseId) lease = granted;
  });
  let done = input.done ?? 0;
  const sizes = new Set(input.sizes ?? []);
  for (let i = 0; i < Math.min(input.remaining, CYCLES_PER_RUN); i++) {
    lease = undefined;
    const request = { experimentId, requirements: input.requirements, priority: 0 };
    await pool.signal(requestLeaseSignal, request);
    // Asked again now and then, as an experiment asks: a holder asking again is told its lease again.
    while (!(await condition(() => lease !== undefined, LEASE_REQUEST_RENEWAL_MS)))
      await pool.signal(requestLeaseSignal, request);
    lastLeaseId = lease!.leaseId;
    sizes.add(lease!.slots.length);
    if (input.holdMs) await sleep(input.holdMs);
    await pool.signal(releaseLeaseSignal, { experimentId });
    done++;
  }
  const remaining = input.remaining - Math.min(input.remaining, CYCLES_PER_RUN);
  const carried = { ...input, remaining, done, sizes: [...sizes].sort((a, b) => a - b) };
  if (remaining > 0) await continueAsNew<typeof leaseCyclerWorkflow>(carried);
  return { cycles: done, sizes: carried.sizes };
}
