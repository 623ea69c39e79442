import type { PoolSettings } from '../domain/pool-settings.js';
import type { PlacementPolicy } from '../domain/placement.js';
import type { Catalog, CatalogReader } from './catalog.js';

/** Rows of pool_settings: one for the configuration, one per drained slot. */
const CONFIGURATION_KEY = 'configuration';
const DRAIN_PREFIX = 'drain:';

interface SettingRow {
  key: string;
  value: string;
}

/** The pool's persisted settings: what `configurePool` and operator drains last wrote. */
export async function readPoolSettings(catalog: CatalogReader): Promise<PoolSettings> {
  const rows = await catalog.sql.all<SettingRow>('SELECT key, value FROM pool_settings ORDER BY key');
  const settings: PoolSettings = { drains: {} };
  for (const row of rows) {
    if (row.key === CONFIGURATION_KEY) {
      const configuration = JSON.parse(row.value) as { heartbeatLimitMs?: number; policy?: Partial<PlacementPolicy> };
      if (configuration.heartbeatLimitMs !== undefined) settings.heartbeatLimitMs = configuration.heartbeatLimitMs;
      if (configuration.policy !== undefined) settings.policy = configuration.policy;
    } else if (row.key.startsWith(DRAIN_PREFIX)) {
      settings.drains[row.key.slice(DRAIN_PREFIX.length)] = JSON.parse(row.value) as string;
    }
  }
  return settings;
}

/** Keeps the pool's configuration as it now stands (the whole of it, not the change). */
export async function writePoolConfiguration(
  catalog: Catalog,
  configuration: { heartbeatLimitMs: number; policy: PlacementPolicy },
): Promise<void> {
  await upsert(catalog, CONFIGURATION_KEY, configuration);
}

/** Keeps (drained) or forgets (undrained) an operator's drain of these slots. */
export async function writePoolDrains(
  catalog: Catalog,
  change: { slotIds: string[]; drained: boolean; reason: string },
): Promise<void> {
  await catalog.sql.transaction(async (tx) => {
    for (const slotId of change.slotIds) {
      if (change.drained)
        await tx.run(
          `INSERT INTO pool_settings (key, value, updated_at) VALUES (?, ?, ?)
           ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
          [DRAIN_PREFIX + slotId, JSON.stringify(change.reason), new Date().toISOString()],
        );
      else await tx.run('DELETE FROM pool_settings WHERE key = ?', [DRAIN_PREFIX + slotId]);
    }
  });
}

async function upsert(catalog: Catalog, key: string, value: unknown): Promise<void> {
  await catalog.sql.run(
    `INSERT INTO pool_settings (key, value, updated_at) VALUES (?, ?, ?)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
    [key, JSON.stringify(value), new Date().toISOString()],
  );
}
