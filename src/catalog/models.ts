import type { SqlDatabase, SqlRunner, SqlValue } from './sql.js';
import {
  PROMOTION_CODES,
  currentVersion,
  rollbackTarget,
  type AliasMove,
  type PromotionStage,
  type PromotionStatus,
} from '../domain/promotion.js';

type Row = Record<string, unknown>;

export interface ModelVersion {
  model: string;
  version: number;
  experimentId: string;
  artifactPath: string;
  artifactSha256: string;
  promotionId: string;
  holdoutExperimentId: string | null;
  holdoutMetric: number | null;
  metricName: string;
  direction: 'minimize' | 'maximize';
  createdAt: string;
}

export interface PromotionRecord {
  id: string;
  model: string;
  alias: string;
  experimentId: string;
  status: PromotionStatus;
  code: string | null;
  reason: string | null;
  candidateMetric: number | null;
  incumbentVersion: number | null;
  incumbentMetric: number | null;
  threshold: number;
  requestedBy: string;
  decidedBy: string | null;
  startedAt: string;
  endedAt: string | null;
  artifactPath: string | null;
  artifactSha256: string | null;
  holdoutExperimentId: string | null;
  approvalRequired: boolean;
  stages: PromotionStage[];
}

export interface AliasMoveRecord extends AliasMove {
  model: string;
  alias: string;
  by: string;
  promotionId: string | null;
  reason: string | null;
}

/** What moving an alias found: done, or refused with a promotion code. */
export type AliasMoveResult =
  | { moved: true; version: number; previousVersion: number | null }
  | { moved: false; code: string; reason: string };

const camel = (column: string) => column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
function decode<T>(row: Row): T {
  const out: Row = {};
  // PostgreSQL's rowid column (migrate.ts) orders rows; it is not part of the record.
  for (const [column, value] of Object.entries(row)) if (column !== 'rowid') out[camel(column)] = value;
  return out as T;
}
function decodePromotion(row: Row): PromotionRecord {
  const out = decode<PromotionRecord & { stages: unknown; approvalRequired: unknown }>(row);
  return {
    ...out,
    approvalRequired: row.approval_required === 1,
    stages: typeof row.stages === 'string' ? (JSON.parse(row.stages) as PromotionStage[]) : [],
  };
}

/** An alias's moves, oldest first (in a transaction or not). */
async function aliasMoves(sql: SqlRunner, model: string, alias?: string): Promise<AliasMoveRecord[]> {
  const rows = alias
    ? await sql.all('SELECT * FROM alias_moves WHERE model = ? AND alias = ? ORDER BY at, rowid', [model, alias])
    : await sql.all('SELECT * FROM alias_moves WHERE model = ? ORDER BY at, rowid', [model]);
  return rows.map((row) => decode<AliasMoveRecord>(row));
}

/** The alias move a promotion or rollback request already made, as its answer (null if none). */
async function moveOf(
  sql: SqlRunner,
  requestId: string,
  kind: 'promote' | 'rollback',
): Promise<AliasMoveResult | null> {
  const row = await sql.get('SELECT version, previous_version FROM alias_moves WHERE promotion_id = ? AND kind = ?', [
    requestId,
    kind,
  ]);
  return row
    ? { moved: true, version: row.version as number, previousVersion: (row.previous_version as number | null) ?? null }
    : null;
}

/**
 * Models, their versions, promotions and alias history in the catalog (tables of
 * schema.ts). Written only by the promotion activities; read by the CLI and for lineage.
 */
export class ModelCatalog {
  constructor(readonly sql: SqlDatabase) {}

  /** Creates or updates a promotion's row (idempotent: a retried activity writes the same values). */
  async recordPromotion(update: Partial<PromotionRecord> & { id: string }): Promise<void> {
    const columns: Record<string, SqlValue> = {};
    for (const [key, value] of Object.entries(update)) {
      if (value === undefined || key === 'id') continue;
      const column = key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      columns[column] =
        key === 'stages' ? JSON.stringify(value) : key === 'approvalRequired' ? (value ? 1 : 0) : (value as SqlValue);
    }
    const names = Object.keys(columns);
    const values = names.map((n) => columns[n]!);
    await this.sql.transaction(async (tx) => {
      if (await tx.get('SELECT 1 AS one FROM promotions WHERE id = ?', [update.id])) {
        if (names.length === 0) return;
        await tx.run(`UPDATE promotions SET ${names.map((n) => `${n} = ?`).join(', ')} WHERE id = ?`, [
          ...values,
          update.id,
        ]);
      } else {
        await tx.run(
          `INSERT INTO promotions (id, ${names.join(', ')}) VALUES (?, ${names.map(() => '?').join(', ')})`,
          [update.id, ...values],
        );
      }
    });
  }

  async promotion(id: string): Promise<PromotionRecord | undefined> {
    const row = (await this.sql.get('SELECT * FROM promotions WHERE id = ?', [id])) as Row | undefined;
    return row ? decodePromotion(row) : undefined;
  }

  async promotions(model?: string): Promise<PromotionRecord[]> {
    const rows = model
      ? await this.sql.all('SELECT * FROM promotions WHERE model = ? ORDER BY started_at, rowid', [model])
      : await this.sql.all('SELECT * FROM promotions ORDER BY model, started_at, rowid');
    return (rows as Row[]).map(decodePromotion);
  }

  /** Lineage: every promotion (any outcome) of one experiment's model. */
  async promotionsByExperiment(experimentId: string): Promise<PromotionRecord[]> {
    return (
      (await this.sql.all('SELECT * FROM promotions WHERE experiment_id = ? ORDER BY started_at, rowid', [
        experimentId,
      ])) as Row[]
    ).map(decodePromotion);
  }

  async versions(model: string): Promise<ModelVersion[]> {
    return (
      (await this.sql.all('SELECT * FROM model_versions WHERE model = ? ORDER BY version', [model])) as Row[]
    ).map((row) => decode<ModelVersion>(row));
  }

  async version(model: string, version: number): Promise<ModelVersion | undefined> {
    const row = (await this.sql.get('SELECT * FROM model_versions WHERE model = ? AND version = ?', [
      model,
      version,
    ])) as Row | undefined;
    return row ? decode<ModelVersion>(row) : undefined;
  }

  /** Lineage: the model versions made from one experiment's artifacts. */
  async versionsByExperiment(experimentId: string): Promise<ModelVersion[]> {
    return (
      (await this.sql.all('SELECT * FROM model_versions WHERE experiment_id = ? ORDER BY model, version', [
        experimentId,
      ])) as Row[]
    ).map((row) => decode<ModelVersion>(row));
  }

  async models(): Promise<string[]> {
    return (
      (await this.sql.all('SELECT model FROM model_versions UNION SELECT model FROM promotions ORDER BY model')) as {
        model: string;
      }[]
    ).map((row) => row.model);
  }

  /** An alias's moves, oldest first. */
  aliasMoves(model: string, alias?: string): Promise<AliasMoveRecord[]> {
    return aliasMoves(this.sql, model, alias);
  }

  /** The version each alias of the model holds now. */
  async aliases(model: string): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    const names = (await this.sql.all('SELECT DISTINCT alias FROM alias_moves WHERE model = ?', [model])) as {
      alias: string;
    }[];
    for (const { alias } of names) {
      const version = currentVersion(await this.aliasMoves(model, alias));
      if (version !== null) out[alias] = version;
    }
    return out;
  }

  /** The version holding an alias now, with its evidence (null when the alias was never moved). */
  async incumbent(model: string, alias: string): Promise<ModelVersion | null> {
    const version = currentVersion(await this.aliasMoves(model, alias));
    return version === null ? null : ((await this.version(model, version)) ?? null);
  }

  /**
   * Moves the alias to the candidate, in one transaction: only if it still holds `expected` (the
   * version the evaluation compared with), else superseded. The candidate's version is the
   * existing one for the same experiment and artifact bytes, or the next number.
   */
  promote(input: {
    model: string;
    alias: string;
    expected: number | null;
    candidate: Omit<ModelVersion, 'version' | 'createdAt' | 'model'>;
    by: string;
    promotionId: string;
    at: string;
  }): Promise<AliasMoveResult> {
    return this.sql.transaction(async (tx): Promise<AliasMoveResult> => {
      // A retried activity whose first attempt committed: the same answer.
      const already = await moveOf(tx, input.promotionId, 'promote');
      if (already) return already;
      const current = currentVersion(await aliasMoves(tx, input.model, input.alias));
      if (current !== input.expected)
        return {
          moved: false,
          code: PROMOTION_CODES.superseded,
          reason: `${input.model}@${input.alias} moved since the evaluation (it held ${input.expected === null ? 'no version' : `version ${input.expected}`}, now version ${current})`,
        };
      const same = (await tx.get(
        'SELECT version FROM model_versions WHERE model = ? AND experiment_id = ? AND artifact_sha256 = ?',
        [input.model, input.candidate.experimentId, input.candidate.artifactSha256],
      )) as { version: number } | undefined;
      let version = same?.version;
      if (version === undefined) {
        const max = (await tx.get('SELECT MAX(version) AS v FROM model_versions WHERE model = ?', [input.model])) as {
          v: number | null;
        };
        version = (max.v ?? 0) + 1;
        const c = input.candidate;
        await tx.run(
          `INSERT INTO model_versions (model, version, experiment_id, artifact_path, artifact_sha256, promotion_id,
               holdout_experiment_id, holdout_metric, metric_name, direction, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          [
            input.model,
            version,
            c.experimentId,
            c.artifactPath,
            c.artifactSha256,
            c.promotionId,
            c.holdoutExperimentId,
            c.holdoutMetric,
            c.metricName,
            c.direction,
            input.at,
          ],
        );
      }
      await tx.run(
        `INSERT INTO alias_moves (model, alias, version, previous_version, at, "by", kind, promotion_id, reason)
           VALUES (?, ?, ?, ?, ?, ?, 'promote', ?, NULL)`,
        [input.model, input.alias, version, current, input.at, input.by, input.promotionId],
      );
      return { moved: true, version, previousVersion: current };
    });
  }

  /** Moves the alias back to the version it held before its current one (see rollbackTarget), in one transaction. */
  rollback(input: {
    model: string;
    alias: string;
    by: string;
    reason: string | null;
    at: string;
    requestId: string;
  }): Promise<AliasMoveResult> {
    return this.sql.transaction(async (tx): Promise<AliasMoveResult> => {
      const already = await moveOf(tx, input.requestId, 'rollback');
      if (already) return already;
      const target = rollbackTarget(await aliasMoves(tx, input.model, input.alias));
      if (!target)
        return {
          moved: false,
          code: PROMOTION_CODES.nothingToRollBack,
          reason: `${input.model}@${input.alias} has no earlier version to roll back to`,
        };
      await tx.run(
        `INSERT INTO alias_moves (model, alias, version, previous_version, at, "by", kind, promotion_id, reason)
           VALUES (?, ?, ?, ?, ?, ?, 'rollback', ?, ?)`,
        [input.model, input.alias, target.to, target.from, input.at, input.by, input.requestId, input.reason],
      );
      return { moved: true, version: target.to, previousVersion: target.from };
    });
  }
}

/** The versions, aliases and evidence of one model (or every model). */
export async function modelReport(models: ModelCatalog, model: string) {
  const promotions = await models.promotions(model);
  const moves = await models.aliasMoves(model);
  return {
    model,
    aliases: await models.aliases(model),
    versions: (await models.versions(model)).map((v) => {
      const promotion = promotions.find((p) => p.id === v.promotionId);
      return {
        version: v.version,
        experiment_id: v.experimentId,
        artifact: { path: v.artifactPath, sha256: v.artifactSha256 },
        holdout_experiment_id: v.holdoutExperimentId,
        holdout_metric: v.holdoutMetric,
        metric_name: v.metricName,
        direction: v.direction,
        promotion_id: v.promotionId,
        incumbent_version: promotion?.incumbentVersion ?? null,
        incumbent_metric: promotion?.incumbentMetric ?? null,
        threshold: promotion?.threshold ?? null,
        requested_by: promotion?.requestedBy ?? null,
        approved_by: promotion?.approvalRequired ? promotion.decidedBy : null,
        created_at: v.createdAt,
      };
    }),
    alias_history: moves.map((m) => ({
      alias: m.alias,
      kind: m.kind,
      version: m.version,
      previous_version: m.previousVersion,
      at: m.at,
      by: m.by,
      promotion_id: m.kind === 'promote' ? m.promotionId : null,
      rollback_id: m.kind === 'rollback' ? m.promotionId : null,
      reason: m.reason,
    })),
    promotions: promotions.map((p) => ({
      promotion_id: p.id,
      alias: p.alias,
      experiment_id: p.experimentId,
      status: p.status,
      code: p.code,
      candidate_metric: p.candidateMetric,
      incumbent_version: p.incumbentVersion,
      incumbent_metric: p.incumbentMetric,
      threshold: p.threshold,
      requested_by: p.requestedBy,
      decided_by: p.decidedBy,
      started_at: p.startedAt,
      ended_at: p.endedAt,
    })),
  };
}
