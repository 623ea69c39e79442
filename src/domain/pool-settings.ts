import type { PlacementPolicy } from './placement.js';

/**
 * What an operator set on the pool, kept in the catalog so that a pool started again (after a
 * terminate, or by `expctl pool repair`) serves with it: the heartbeat limit, the placement policy
 * and the operator's drains. Pure: shared by the pool workflow, its activities and the CLI.
 */
export interface PoolSettings {
  heartbeatLimitMs?: number;
  policy?: Partial<PlacementPolicy>;
  /** Operator drains by slot id: the reason shown in `expctl pool` (with who drained it). */
  drains: Record<string, string>;
}

export const NO_POOL_SETTINGS: PoolSettings = { drains: {} };
