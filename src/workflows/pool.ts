import { allHandlersFinished, condition, continueAsNew, workflowInfo } from '@temporalio/workflow';
import { pruneUsage } from '../domain/fair-share.js';
import { HISTORY_EVENTS_LIMIT } from '../domain/limits.js';
import type { PoolSnapshot } from './definitions.js';
import { installQueries } from './pool-queries.js';
import { Reconciler } from './pool-reconcile.js';
import { installRegistration } from './pool-registration.js';
import { grantQueued, installRequests } from './pool-requests.js';
import { installSettings, restoreSettings } from './pool-settings.js';
import { PoolState } from './pool-state.js';
import { WakeTimer } from './pool-wake.js';

/**
 * Or this many bytes written by this run, whichever comes first: a busy fleet's events are larger
 * than an idle one's. The state a run starts with is not counted: at 1,000 GPUs it is over half a
 * MiB, and counting it had the pool continue as new every few seconds.
 */
const HISTORY_BYTES_LIMIT = 1 << 20;

/**
 * The single authority for leases, told in its phases: registration (pool-registration.ts),
 * requests and grants (pool-requests.ts), reconciliation (pool-reconcile.ts) and settings
 * (pool-settings.ts), all sharing one PoolState. Signals mutate state synchronously (so they never
 * interleave); the main loop reconciles, then grants queued requests.
 *
 * `carried` is the state of the run it continues, or (re-created after it was gone) the state the
 * orchestrator rebuilt; a pool that starts afresh reads the operator's settings from the catalog.
 */
export async function poolWorkflow(carried?: Partial<PoolSnapshot>): Promise<void> {
  const state = new PoolState(carried);
  installQueries(state);
  installRegistration(state);
  installRequests(state);
  installSettings(state);
  if (workflowInfo().continuedFromExecutionRunId === undefined) await restoreSettings(state);

  const carriedBytes = workflowInfo().historySize;
  const reconciler = new Reconciler(state);
  const wake = new WakeTimer();
  for (;;) {
    wake.within(reconciler.nextWakeMs());
    await condition(() => state.dirty || wake.fired);
    wake.take();
    state.dirty = false;

    const now = Date.now();
    await reconciler.reconcile(now);
    grantQueued(state, now);
    if (historyFull(carriedBytes)) return continueAsNewWith(state);
  }
}

function historyFull(carriedBytes: number): boolean {
  const info = workflowInfo();
  return (
    info.continueAsNewSuggested ||
    info.historyLength > HISTORY_EVENTS_LIMIT ||
    info.historySize - carriedBytes > HISTORY_BYTES_LIMIT
  );
}

/** Continues as new once every background call has landed and every handler has finished. */
async function continueAsNewWith(state: PoolState): Promise<never> {
  await Promise.all(state.inFlight);
  await condition(allHandlersFinished);
  if (state.pool.usage) state.pool.usage = pruneUsage(state.pool.usage, Date.now());
  return continueAsNew<typeof poolWorkflow>(state.pool);
}
