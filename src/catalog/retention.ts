import { isTerminal } from '../domain/experiment.js';
import type { SqlRunner } from './sql.js';

/**
 * What the record says about keeping a run's stored objects (`expctl store gc`): a run is retained
 * while it is live, when it was kept (decision keep), when a model version came from it, and while
 * it ended less than the age limit ago. A retained run's patch and artifacts stay referenced.
 */
export interface RunRetention {
  experimentId: string;
  live: boolean;
  kept: boolean;
  modelVersion: boolean;
  /** When it ended (or its record last changed, for a run that ended before it started). */
  endedAt: string | null;
}

/** Every run the catalog knows, with what its retention depends on. */
export async function runRetention(sql: SqlRunner): Promise<Map<string, RunRetention>> {
  const rows = await sql.all<{ id: string; status: string; decision: string | null; ended_at: string | null }>(
    'SELECT id, status, decision, COALESCE(ended_at, updated_at) AS ended_at FROM experiments',
  );
  const models = new Set(
    (await sql.all<{ experiment_id: string }>('SELECT DISTINCT experiment_id FROM model_versions')).map(
      (row) => row.experiment_id,
    ),
  );
  return new Map(
    rows.map((row) => [
      row.id,
      {
        experimentId: row.id,
        live: !isTerminal(row.status),
        kept: row.decision === 'keep',
        modelVersion: models.has(row.id),
        endedAt: row.ended_at,
      },
    ]),
  );
}

/** Whether a run's objects stay: live, kept, a model version's, or ended after `cutoff`. */
export function retained(run: RunRetention, cutoff: Date): boolean {
  if (run.live || run.kept || run.modelVersion) return true;
  return run.endedAt === null || new Date(run.endedAt).getTime() > cutoff.getTime();
}

/** The objects the record names for `experimentIds` (patches, artifacts) and for every model version. */
export async function recordReferences(sql: SqlRunner, experimentIds: ReadonlySet<string>): Promise<Set<string>> {
  const found = new Set<string>();
  const patches = await sql.all<{ id: string; patch_sha256: string | null }>(
    'SELECT id, patch_sha256 FROM experiments WHERE patch_sha256 IS NOT NULL',
  );
  for (const row of patches) if (experimentIds.has(row.id) && row.patch_sha256) found.add(row.patch_sha256);
  const artifacts = await sql.all<{ experiment_id: string; sha256: string }>(
    'SELECT experiment_id, sha256 FROM artifacts',
  );
  for (const row of artifacts) if (experimentIds.has(row.experiment_id)) found.add(row.sha256);
  for (const row of await sql.all<{ artifact_sha256: string }>('SELECT artifact_sha256 FROM model_versions'))
    found.add(row.artifact_sha256);
  return found;
}
