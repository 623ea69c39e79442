import { ApplicationFailure, log, proxyActivities, setHandler } from '@temporalio/workflow';
import { drainOutcome } from '../domain/fleet.js';
import type { PoolSettings } from '../domain/pool-settings.js';
import type { createPoolSettingsActivities } from '../activities/pool-settings.js';
import { requirePermission } from './authorize.js';
import { CONTROL_ACTIVITY } from './control-retry.js';
import { gpuFailureDrainReason, reportLiftsDrain } from '../domain/health.js';
import {
  configurePoolUpdate,
  drainUpdate,
  gpuFailedSignal,
  healthReportSignal,
  type SlotEntry,
} from './definitions.js';
import type { PoolState } from './pool-state.js';

/** The catalog's copy of the pool's settings (only activities write it). */
const kept = proxyActivities<ReturnType<typeof createPoolSettingsActivities>>(CONTROL_ACTIVITY);

/**
 * Settings: operator drains, health drains and the pool's configuration. What an operator sets is
 * written to the catalog before it takes effect, so a pool started again serves with it too.
 */
export function installSettings(state: PoolState): void {
  const { pool } = state;
  setHandler(drainUpdate, async ({ target, drained, reason, authorization }) => {
    const matching = () => pool.slots.filter((entry) => entry.slot.host === target || entry.slot.slotId === target);
    if (matching().length === 0) throw ApplicationFailure.nonRetryable(`no host or slot named ${target} in the pool`);
    const identity = await requirePermission({
      authorization,
      action: 'drain',
      target,
      content: { target, drained, reason },
      acceptedAt: new Date().toISOString(),
      detail: `${drained ? 'drain' : 'undrain'}: ${reason}`,
    });
    const drainReason = `${reason} (by ${identity.name})`;
    await kept.savePoolDrains({ slotIds: matching().map((entry) => entry.slot.slotId), drained, reason: drainReason });
    // Read again after the waits: a registration meanwhile may have replaced the host's slot entries.
    const matches = matching();
    const outcome = drainOutcome(target, drained, matches);
    for (const entry of matches) setOperatorDrain(state, entry, drained ? drainReason : null);
    // A run lined up on a drained GPU goes back to the queue: a drain lets only the running lease finish.
    if (drained) for (const entry of matches) state.requeueNext(entry, `${target} drained: ${drainReason}`);
    state.touch();
    return outcome;
  });
  setHandler(healthReportSignal, ({ host, report, problems }) => {
    pool.health[host] = { checkedAt: report.checkedAt, problems, report };
    for (const entry of state.slotsOf(host)) {
      const problem = problems
        .filter((p) => p.slotId === entry.slot.slotId)
        .map((p) => p.reason)
        .join('; ');
      if (problem && entry.drainedBy !== 'operator') {
        entry.draining = true;
        entry.drainReason = `health: ${problem}`;
        entry.drainedBy = 'health';
        state.requeueNext(entry, entry.drainReason);
      } else if (!problem && entry.drainedBy === 'health' && reportLiftsDrain(report.checkedAt, entry.healthSince)) {
        entry.draining = false;
        entry.drainReason = null;
        entry.drainedBy = null;
        delete entry.healthSince;
      }
    }
    state.touch();
  });
  setHandler(gpuFailedSignal, ({ experimentId, failure }) => {
    // The GPU as registered now: a slot re-registered with another GPU under its id is not drained.
    const entry = pool.slots.find((e) => e.slot.slotId === failure.slotId && e.slot.uuid === failure.uuid);
    if (!entry || entry.drainedBy === 'operator') return;
    entry.draining = true;
    entry.drainReason = gpuFailureDrainReason(failure, experimentId);
    entry.drainedBy = 'health';
    entry.healthSince = failure.at;
    // Its worker hands nothing on after a failed GPU: the run lined up there waits in the queue again.
    state.requeueNext(entry, entry.drainReason);
    state.touch();
  });
  setHandler(configurePoolUpdate, async ({ heartbeatLimitMs, policy, authorization }) => {
    if (heartbeatLimitMs !== undefined && !(heartbeatLimitMs >= 1000))
      throw ApplicationFailure.nonRetryable('heartbeatLimitMs must be at least 1000');
    await requirePermission({
      authorization,
      action: 'configure_pool',
      target: 'pool',
      content: { heartbeatLimitMs, policy },
      acceptedAt: new Date().toISOString(),
    });
    const configured = {
      heartbeatLimitMs: heartbeatLimitMs ?? pool.heartbeatLimitMs,
      policy: policy ? { ...pool.policy, ...policy } : pool.policy,
    };
    await kept.savePoolConfiguration(configured);
    pool.heartbeatLimitMs = configured.heartbeatLimitMs;
    pool.policy = configured.policy;
    state.touch();
    return configured;
  });
}

/** An operator's drain (reason) or undrain (null) of one slot, as the pool and its kept drains hold it. */
function setOperatorDrain(state: PoolState, entry: SlotEntry, reason: string | null): void {
  entry.draining = reason !== null;
  entry.drainReason = reason;
  entry.drainedBy = reason !== null ? 'operator' : null;
  const drains = { ...state.pool.drains };
  if (reason !== null) drains[entry.slot.slotId] = reason;
  else delete drains[entry.slot.slotId];
  state.pool.drains = drains;
}

/**
 * A pool that starts afresh (first start, or re-created after it was gone) takes its settings from
 * the catalog; one that continued as new carries them. Registrations that arrived meanwhile keep
 * their slots; the kept drains are laid on them too.
 */
export async function restoreSettings(state: PoolState): Promise<void> {
  let settings: PoolSettings;
  try {
    settings = await kept.loadPoolSettings();
  } catch (error) {
    // Serving with defaults beats not serving: the operator sees the defaults in `expctl pool`.
    log.error('could not read the pool settings from the catalog', { error: (error as Error).message });
    return;
  }
  const { pool } = state;
  if (settings.heartbeatLimitMs !== undefined) pool.heartbeatLimitMs = settings.heartbeatLimitMs;
  if (settings.policy) pool.policy = { ...pool.policy, ...settings.policy };
  pool.drains = settings.drains;
  for (const entry of pool.slots) {
    const reason = settings.drains[entry.slot.slotId];
    if (reason !== undefined) setOperatorDrain(state, entry, reason);
    else if (entry.drainedBy === 'operator') setOperatorDrain(state, entry, null);
  }
  state.touch();
}
