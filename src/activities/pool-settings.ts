import type { Catalog } from '../catalog/catalog.js';
import { readPoolSettings, writePoolConfiguration, writePoolDrains } from '../catalog/pool-settings.js';
import type { PoolSettings } from '../domain/pool-settings.js';
import type { PlacementPolicy } from '../domain/placement.js';

/**
 * The pool's settings in the catalog: written when an operator changes them, read when a pool
 * starts afresh (not when it continues as new: it carries them), so a re-created pool keeps them.
 */
export function createPoolSettingsActivities({ catalog }: { catalog: Catalog }) {
  return {
    loadPoolSettings(): Promise<PoolSettings> {
      return readPoolSettings(catalog);
    },
    savePoolConfiguration(configuration: { heartbeatLimitMs: number; policy: PlacementPolicy }): Promise<void> {
      return writePoolConfiguration(catalog, configuration);
    },
    savePoolDrains(change: { slotIds: string[]; drained: boolean; reason: string }): Promise<void> {
      return writePoolDrains(catalog, change);
    },
  };
}
