import { condition, proxyLocalActivities, setHandler, sleep, workflowInfo } from '@temporalio/workflow';
import type { createControlActivities } from '../activities/control.js';
import type { Requirements } from '../domain/request.js';
import { LEASE_REQUEST_RENEWAL_MS } from '../domain/limits.js';
import { CONTROL_STEP } from './control-retry.js';
import { leaseGrantedSignal, type Lease } from './definitions.js';

/** The pool's lease messages, sent by the local activities experiments send them through. */
const control =
  proxyLocalActivities<Pick<ReturnType<typeof createControlActivities>, 'requestLease' | 'releaseLease'>>(CONTROL_STEP);

export interface SimRunInput {
  requirements: Requirements;
  /** The simulated job's length: the lease is held this long, then released (the job itself is instant). */
  holdMs: number;
  /** Fair share's tag, as an experiment's lease carries it. */
  tag?: string;
}

/** When the run asked, when its lease arrived (workflow-task clock, epoch ms), and where. */
export interface SimRunTimes {
  requestedAt: number;
  grantedAt: number;
  /** The pool's own clock at the grant. */
  poolGrantedAt: number;
  host: string;
}

/**
 * The simulated fleet's run (`npm run bench -- sim`): asks the pool for one GPU the way an
 * experiment does, holds it for the job's length and releases it. The pool protocol it speaks
 * lives here only, so the bench follows the pool's protocol by changing this one file.
 */
export async function simRunWorkflow(input: SimRunInput): Promise<SimRunTimes> {
  const experimentId = workflowInfo().workflowId;
  let lease: Lease | undefined;
  setHandler(leaseGrantedSignal, (granted) => {
    lease ??= granted;
  });
  const requestedAt = Date.now();
  const ask = async () => {
    const answer = await control.requestLease({
      experimentId,
      requirements: input.requirements,
      priority: 0,
      ...(input.tag !== undefined ? { tag: input.tag } : {}),
    });
    if ('lease' in answer) lease ??= answer.lease;
  };
  await ask();
  // Asked again now and then, as an experiment asks (a repaired or re-created pool may have lost it).
  while (!(await condition(() => lease !== undefined, LEASE_REQUEST_RENEWAL_MS))) await ask().catch(() => undefined);
  const granted = lease!;
  const grantedAt = Date.now();
  await sleep(input.holdMs);
  await control.releaseLease({ experimentId, leaseId: granted.leaseId });
  return { requestedAt, grantedAt, poolGrantedAt: granted.grantedAt, host: granted.slot.host };
}
