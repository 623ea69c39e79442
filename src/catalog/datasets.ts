import crypto from 'node:crypto';
import type { SqlRunner } from './sql.js';
import type { SealReason, Schema, ShardEntry } from '../domain/datasets.js';
import { totalRecords, versionSchema, type GateHistory, type GateInput, type GateOutcome } from '../domain/gates.js';

type Row = Record<string, unknown>;
const json = <T>(value: unknown): T | null => (typeof value === 'string' ? (JSON.parse(value) as T) : null);

export type DatasetVersionStatus = 'open' | 'sealed' | 'passed' | 'failed';

/** One version as the coordinator's experiments and `data show` read it. */
export interface DatasetVersionRecord {
  dataset: string;
  version: number;
  status: DatasetVersionStatus;
  records: number | null;
  schema: Schema | null;
  manifestSha256: string | null;
  shards: { index: number; sha256: string; bytes: number; records: number | null; fileName: string }[];
}

export interface DatasetVersionRow {
  dataset: string;
  version: number;
  status: DatasetVersionStatus;
  workflowId: string;
  expectedShards: number;
  arrivedShards: number;
  openedAt: string;
  sealedAt: string | null;
  sealReason: SealReason | null;
  decidedAt: string | null;
  records: number | null;
  manifestSha256: string | null;
}

export interface ShardRow extends ShardEntry {
  deliveries: number;
}

export interface LateShardRow {
  dataset: string;
  version: number;
  shardIndex: number;
  shardCount: number;
  sha256: string;
  fileName: string;
  arrivedAt: string;
  action: 'next' | 'refused';
  movedToVersion: number | null;
}

export interface GateResultRow extends GateOutcome {
  dataset: string;
  version: number;
  history: GateHistory | null;
  at: string;
}

export interface AlertInput {
  kind: string;
  /** What it is about: `dataset@version`, an experiment, a promotion. */
  subject: string;
  code: string | null;
  message: string;
  details?: Record<string, unknown>;
  /** Deduplicates retries: one alert per key. Default: kind, subject and code. */
  key?: string;
  at?: string;
}

export interface AlertRow {
  id: number;
  at: string;
  kind: string;
  subject: string;
  code: string | null;
  message: string;
  details: Record<string, unknown> | null;
  commandExit: number | null;
  commandError: string | null;
}

/** The manifest digest of a version: sha256 over its shards' "index sha256" lines, by index. */
export function manifestDigest(shards: { index: number; sha256: string }[]): string {
  const lines = [...shards].sort((a, b) => a.index - b.index).map((s) => `${s.index} ${s.sha256}\n`);
  return crypto.createHash('sha256').update(lines.join('')).digest('hex');
}

function shardFromRow(row: Row): ShardRow {
  return {
    index: row.shard_index as number,
    count: row.shard_count as number,
    sha256: row.sha256 as string,
    declaredSha256: row.declared_sha256 as string,
    declaredRecords: row.declared_records as number | null,
    bytes: row.bytes as number,
    records: row.records as number | null,
    schema: json<Schema>(row.schema),
    format: row.format as ShardEntry['format'],
    fileName: row.file_name as string,
    arrivedAt: row.arrived_at as string,
    deliveries: row.deliveries as number,
  };
}

/** Per day and gate: what `data stats` prints. */
export interface GateStatRow {
  day: string;
  gate: string;
  checked: number;
  passed: number;
  passRate: number;
  failures: Record<string, number>;
}

/** Dataset versions, shards, gate results and alerts in the catalog (written only by activities). */
export class DatasetRecords {
  constructor(private readonly sql: SqlRunner) {}

  async openVersion(v: {
    dataset: string;
    version: number;
    workflowId: string;
    expectedShards: number;
    openedAt: string;
  }): Promise<void> {
    await this.sql.run(
      `INSERT INTO dataset_versions (dataset, version, status, workflow_id, expected_shards, opened_at)
         VALUES (?, ?, 'open', ?, ?, ?) ON CONFLICT DO NOTHING`,
      [v.dataset, v.version, v.workflowId, v.expectedShards, v.openedAt],
    );
  }

  /** A shard new in its version (a retried write changes nothing). */
  async addShard(dataset: string, version: number, shard: ShardEntry): Promise<void> {
    await this.sql.run(
      `INSERT INTO dataset_shards (dataset, version, shard_index, shard_count, sha256, declared_sha256, declared_records,
           bytes, records, schema, format, file_name, arrived_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      [
        dataset,
        version,
        shard.index,
        shard.count,
        shard.sha256,
        shard.declaredSha256,
        shard.declaredRecords,
        shard.bytes,
        shard.records,
        shard.schema ? JSON.stringify(shard.schema) : null,
        shard.format,
        shard.fileName,
        shard.arrivedAt,
      ],
    );
  }

  /** Another delivery of a shard already held: counted, content unchanged. */
  async countDelivery(dataset: string, version: number, index: number): Promise<void> {
    await this.sql.run(
      `UPDATE dataset_shards SET deliveries = deliveries + 1 WHERE dataset = ? AND version = ? AND shard_index = ?`,
      [dataset, version, index],
    );
  }

  async recordLate(late: LateShardRow): Promise<void> {
    await this.sql.run(
      `INSERT INTO late_shards (dataset, version, shard_index, shard_count, sha256, file_name, arrived_at, action, moved_to_version)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [
        late.dataset,
        late.version,
        late.shardIndex,
        late.shardCount,
        late.sha256,
        late.fileName,
        late.arrivedAt,
        late.action,
        late.movedToVersion,
      ],
    );
  }

  /** Seals a version with the shards it holds now: records, schema and manifest digest are fixed here. */
  async sealVersion(dataset: string, version: number, reason: SealReason, sealedAt: string): Promise<void> {
    const shards = await this.shards(dataset, version);
    await this.sql.run(
      `UPDATE dataset_versions SET status = 'sealed', sealed_at = ?, seal_reason = ?, records = ?, schema = ?, manifest_sha256 = ?
         WHERE dataset = ? AND version = ? AND status = 'open'`,
      [
        sealedAt,
        reason,
        totalRecords(shards),
        JSON.stringify(versionSchema(shards)),
        manifestDigest(shards),
        dataset,
        version,
      ],
    );
  }

  async shards(dataset: string, version: number): Promise<ShardRow[]> {
    return (
      (await this.sql.all(`SELECT * FROM dataset_shards WHERE dataset = ? AND version = ? ORDER BY shard_index`, [
        dataset,
        version,
      ])) as Row[]
    ).map(shardFromRow);
  }

  /** What the gates of a sealed version read: its shards, and the latest passed version before it. */
  async gateInput(dataset: string, version: number): Promise<GateInput> {
    const row = (await this.sql.get(`SELECT expected_shards FROM dataset_versions WHERE dataset = ? AND version = ?`, [
      dataset,
      version,
    ])) as Row | undefined;
    if (!row) throw new Error(`catalog has no version ${dataset}@${version}`);
    const previous = (await this.sql.get(
      `SELECT version, records, schema FROM dataset_versions WHERE dataset = ? AND version < ? AND status = 'passed'
         ORDER BY version DESC LIMIT 1`,
      [dataset, version],
    )) as Row | undefined;
    return {
      expectedShards: row.expected_shards as number,
      shards: await this.shards(dataset, version),
      previousPassed: previous
        ? {
            version: previous.version as number,
            records: previous.records as number | null,
            schema: json<Schema>(previous.schema),
          }
        : null,
    };
  }

  /** A gate's results over this dataset's versions before `version`. */
  async earlierGateResults(dataset: string, gate: string, version: number): Promise<{ passed: boolean }[]> {
    return (
      (await this.sql.all(`SELECT passed FROM gate_results WHERE dataset = ? AND gate = ? AND version < ?`, [
        dataset,
        gate,
        version,
      ])) as Row[]
    ).map((row) => ({ passed: row.passed === 1 }));
  }

  async recordGate(
    dataset: string,
    version: number,
    outcome: GateOutcome,
    history: GateHistory,
    at: string,
  ): Promise<void> {
    await this.sql.run(
      `INSERT INTO gate_results (dataset, version, gate, passed, code, message, history, at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (dataset, version, gate) DO UPDATE SET passed = excluded.passed, code = excluded.code,
           message = excluded.message, history = excluded.history, at = excluded.at`,
      [
        dataset,
        version,
        outcome.gate,
        outcome.passed ? 1 : 0,
        outcome.code,
        outcome.message,
        JSON.stringify(history),
        at,
      ],
    );
  }

  /** After the gates: passed when every gate recorded for it passed, else failed. */
  async decideVersion(dataset: string, version: number, at: string): Promise<DatasetVersionStatus> {
    const gates = await this.gateResults(dataset, version);
    const status: DatasetVersionStatus = gates.length > 0 && gates.every((g) => g.passed) ? 'passed' : 'failed';
    await this.sql.run(
      `UPDATE dataset_versions SET status = ?, decided_at = COALESCE(decided_at, ?) WHERE dataset = ? AND version = ?`,
      [status, at, dataset, version],
    );
    return status;
  }

  async gateResults(dataset: string, version: number): Promise<GateResultRow[]> {
    return (
      (await this.sql.all(`SELECT * FROM gate_results WHERE dataset = ? AND version = ? ORDER BY at, rowid`, [
        dataset,
        version,
      ])) as Row[]
    ).map((row) => ({
      dataset: row.dataset as string,
      version: row.version as number,
      gate: row.gate as GateOutcome['gate'],
      passed: row.passed === 1,
      code: row.code as string | null,
      message: row.message as string,
      history: json<GateHistory>(row.history),
      at: row.at as string,
    }));
  }

  async lateShards(dataset: string, version?: number): Promise<LateShardRow[]> {
    const rows = (
      version === undefined
        ? await this.sql.all(`SELECT * FROM late_shards WHERE dataset = ? ORDER BY arrived_at, rowid`, [dataset])
        : await this.sql.all(
            `SELECT * FROM late_shards WHERE dataset = ? AND (version = ? OR moved_to_version = ?) ORDER BY arrived_at, rowid`,
            [dataset, version, version],
          )
    ) as Row[];
    return rows.map((row) => ({
      dataset: row.dataset as string,
      version: row.version as number,
      shardIndex: row.shard_index as number,
      shardCount: row.shard_count as number,
      sha256: row.sha256 as string,
      fileName: row.file_name as string,
      arrivedAt: row.arrived_at as string,
      action: row.action as 'next' | 'refused',
      movedToVersion: row.moved_to_version as number | null,
    }));
  }

  async versions(dataset?: string): Promise<DatasetVersionRow[]> {
    const rows = (await this.sql.all(
      `SELECT v.*, (SELECT COUNT(*) FROM dataset_shards s WHERE s.dataset = v.dataset AND s.version = v.version) AS arrived
         FROM dataset_versions v ${dataset ? 'WHERE v.dataset = ?' : ''} ORDER BY v.dataset, v.version`,
      [...(dataset ? [dataset] : [])],
    )) as Row[];
    return rows.map((row) => ({
      dataset: row.dataset as string,
      version: row.version as number,
      status: row.status as DatasetVersionStatus,
      workflowId: row.workflow_id as string,
      expectedShards: row.expected_shards as number,
      arrivedShards: row.arrived as number,
      openedAt: row.opened_at as string,
      sealedAt: row.sealed_at as string | null,
      sealReason: row.seal_reason as SealReason | null,
      decidedAt: row.decided_at as string | null,
      records: row.records as number | null,
      manifestSha256: row.manifest_sha256 as string | null,
    }));
  }

  async version(dataset: string, version: number): Promise<DatasetVersionRecord | null> {
    const row = (await this.sql.get(`SELECT * FROM dataset_versions WHERE dataset = ? AND version = ?`, [
      dataset,
      version,
    ])) as Row | undefined;
    if (!row) return null;
    return {
      dataset,
      version,
      status: row.status as DatasetVersionStatus,
      records: row.records as number | null,
      schema: json<Schema>(row.schema),
      manifestSha256: row.manifest_sha256 as string | null,
      shards: (await this.shards(dataset, version)).map((s) => ({
        index: s.index,
        sha256: s.sha256,
        bytes: s.bytes,
        records: s.records,
        fileName: s.fileName,
      })),
    };
  }

  async latestPassed(dataset: string): Promise<DatasetVersionRecord | null> {
    const row = (await this.sql.get(
      `SELECT version FROM dataset_versions WHERE dataset = ? AND status = 'passed' ORDER BY version DESC LIMIT 1`,
      [dataset],
    )) as { version: number } | undefined;
    return row ? await this.version(dataset, row.version) : null;
  }

  /** Per day and gate (optionally one dataset, since an ISO time): checks, passes, pass rate, failure codes. */
  async gateStats(filter: { dataset?: string; since?: string }): Promise<GateStatRow[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (filter.dataset) (where.push('dataset = ?'), params.push(filter.dataset));
    if (filter.since) (where.push('at >= ?'), params.push(filter.since));
    const rows = await this.sql.all(
      `SELECT substr(at, 1, 10) AS day, gate, COUNT(*) AS checked, SUM(passed) AS passed,
              ${this.sql.dialect.groupConcat('CASE WHEN passed = 0 THEN code END')} AS codes
       FROM gate_results ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       GROUP BY substr(at, 1, 10), gate ORDER BY day, gate`,
      params,
    );
    return rows.map((row) => {
      const failures: Record<string, number> = {};
      for (const code of typeof row.codes === 'string' ? row.codes.split(',') : [])
        failures[code] = (failures[code] ?? 0) + 1;
      const checked = row.checked as number;
      const passed = row.passed as number;
      return {
        day: row.day as string,
        gate: row.gate as string,
        checked,
        passed,
        passRate: passed / checked,
        failures,
      };
    });
  }

  /** Inserts an alert once per key; says whether it was new (a retry finds it there). */
  async insertAlert(alert: AlertInput): Promise<{ id: number; fresh: boolean; commandExit: number | null }> {
    const key = alert.key ?? `${alert.kind}:${alert.subject}:${alert.code ?? ''}`;
    const inserted = await this.sql.run(
      `INSERT INTO alerts (key, at, kind, subject, code, message, details) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING`,
      [
        key,
        alert.at ?? new Date().toISOString(),
        alert.kind,
        alert.subject,
        alert.code,
        alert.message,
        alert.details ? JSON.stringify(alert.details) : null,
      ],
    );
    const row = (await this.sql.get(`SELECT id, command_exit FROM alerts WHERE key = ?`, [key])) as Row;
    return { id: row.id as number, fresh: inserted.changes > 0, commandExit: row.command_exit as number | null };
  }

  async setAlertCommandResult(id: number, exit: number | null, error: string | null): Promise<void> {
    await this.sql.run(`UPDATE alerts SET command_exit = ?, command_error = ? WHERE id = ?`, [exit, error, id]);
  }

  async alerts(filter: { since?: string; subjectPrefix?: string } = {}): Promise<AlertRow[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (filter.since) (where.push('at >= ?'), params.push(filter.since));
    if (filter.subjectPrefix)
      (where.push('substr(subject, 1, ?) = ?'), params.push(filter.subjectPrefix.length, filter.subjectPrefix));
    return (
      await this.sql.all(
        `SELECT * FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY at, id`,
        params,
      )
    ).map((row) => ({
      id: row.id as number,
      at: row.at as string,
      kind: row.kind as string,
      subject: row.subject as string,
      code: row.code as string | null,
      message: row.message as string,
      details: json<Record<string, unknown>>(row.details),
      commandExit: row.command_exit as number | null,
      commandError: row.command_error as string | null,
    }));
  }
}
