import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DEFAULT_METRIC } from '../domain/decision.js';
import { publicRequest } from '../domain/redact.js';
import type { PinnedDataset } from '../domain/dataset-refs.js';
import type { ExperimentRecord, RecordUpdate } from './record.js';
import {
  INFRASTRUCTURE_STATUSES,
  outcomeRates,
  REFUSAL_STATUSES,
  crashSql,
  type OutcomeCounts,
} from '../domain/outcome.js';
import { chooseMode } from '../domain/strategy.js';
import { telemetryWarnings, type GpuTelemetry } from '../domain/telemetry.js';
import { resultRuns, toRunSummary } from './reports.js';
import { MIGRATIONS } from './schema.js';
import { checkSchemaVersion, migrate } from './migrate.js';
import {
  isPostgresUrl,
  PostgresDatabase,
  SqliteDatabase,
  type SqlDatabase,
  type SqlRunner,
  type SqlValue,
} from './sql.js';
import { DatasetRecords, type DatasetVersionRecord } from './datasets.js';
import { ModelCatalog } from './models.js';
import { ensurePrivateFileSync, PRIVATE_DIR_MODE } from '../security/files.js';

type Row = Record<string, unknown>;

const JSON_COLUMNS = [
  'command',
  'request',
  'resolved_config',
  'patch_files',
  'datasets',
  'environment',
  'placement',
  'metrics',
  'heartbeats',
  'timings',
  'attempt_records',
  'gpu_telemetry',
  'warnings',
];

function camel(column: string): string {
  return column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Columns whose record field has another name. training_seconds keeps the name it was created with,
 * but it holds the training process's wall time on its slot, not the script's training_seconds
 * (that one is timings.trainingSeconds): the record calls it slotSeconds.
 */
const FIELD_OF_COLUMN: Record<string, string> = { commit_sha: 'commit', training_seconds: 'slotSeconds' };

function decode(row: Row): Omit<ExperimentRecord, 'events' | 'artifacts'> {
  const out: Row = {};
  for (const [column, value] of Object.entries(row)) {
    const key = FIELD_OF_COLUMN[column] ?? camel(column);
    out[key] = JSON_COLUMNS.includes(column) && typeof value === 'string' ? JSON.parse(value) : value;
  }
  // The write guard against late retries, not part of the record.
  delete out.revision;
  out.nearMiss = row.near_miss === 1;
  out.shouldAbort = row.should_abort === null ? null : row.should_abort === 1;
  return out as unknown as Omit<ExperimentRecord, 'events' | 'artifacts'>;
}

/** A run's GPU telemetry as the report charts it. */
export interface RunTelemetryRow {
  id: string;
  hypothesis: string;
  gpuTelemetry: GpuTelemetry;
}

/** One tag in `report tags`: counts by kind, rates, best kept metric. */
export interface TagRow extends OutcomeCounts {
  tag: string;
  /** Every record of the tag, active ones included. */
  total: number;
  /** Kept + discarded + crashed: the denominator of the rates. */
  runs: number;
  keepRate: number;
  crashRate: number;
  best: number | null;
  direction: string;
  lastAt: string;
}

/**
 * The operating record, read-only: what every reader (the CLI, reports, the query activity) gets.
 * A reader never migrates: a catalog of another schema version is refused with what to do rather
 * than read wrongly. The record lives in SQLite (a file, the default) or PostgreSQL (a URL).
 */
export class CatalogReader {
  protected constructor(
    readonly sql: SqlDatabase,
    /** Where the record is, for messages: the file, or the URL without its password. */
    readonly location: string,
  ) {}

  /** Opens an existing catalog for reading (SQLite in WAL mode: safe while the orchestrator writes). */
  static async open(location: string): Promise<CatalogReader> {
    const sql = isPostgresUrl(location)
      ? PostgresDatabase.open(location, { max: 2, readOnly: true })
      : openSqliteReader(location);
    try {
      await checkSchemaVersion(sql, MIGRATIONS.length);
    } catch (error) {
      await sql.close();
      throw error;
    }
    return new CatalogReader(sql, sql.location);
  }

  close(): Promise<void> {
    return this.sql.close();
  }

  async get(id: string): Promise<ExperimentRecord | undefined> {
    const row = await this.sql.get('SELECT * FROM experiments WHERE id = ?', [id]);
    if (!row) return undefined;
    return {
      ...decode(row),
      events: await this.sql.all<ExperimentRecord['events'][number]>(
        'SELECT at, status, note FROM events WHERE experiment_id = ? ORDER BY at, rowid',
        [id],
      ),
      artifacts: await this.sql.all<ExperimentRecord['artifacts'][number]>(
        'SELECT path, sha256, bytes, uri FROM artifacts WHERE experiment_id = ? ORDER BY path',
        [id],
      ),
      datasetVersions: await this.pinnedDatasets(id),
    };
  }

  /** The dataset versions an experiment was pinned to, in the order of its references. */
  async pinnedDatasets(experimentId: string): Promise<PinnedDataset[]> {
    const rows = await this.sql.all(
      'SELECT ref, dataset, version, manifest_sha256, records, shards FROM experiment_datasets WHERE experiment_id = ? ORDER BY rowid',
      [experimentId],
    );
    return rows.map((row) => ({
      ref: row.ref as string,
      dataset: row.dataset as string,
      version: row.version as number,
      manifestSha256: row.manifest_sha256 as string,
      records: row.records as number | null,
      shards: JSON.parse(row.shards as string) as PinnedDataset['shards'],
    }));
  }

  /** Experiments started from this one (retry, rerun), oldest first. */
  derivedExperiments(experimentId: string): Promise<{ id: string; kind: string }[]> {
    return this.sql.all<{ id: string; kind: string }>(
      'SELECT id, origin_kind AS kind FROM experiments WHERE origin_id = ? ORDER BY submitted_at, id',
      [experimentId],
    );
  }

  /** The experiments pinned to a dataset version (all versions of it when none is given), oldest first. */
  async experimentsUsing(
    dataset: string,
    version?: number,
  ): Promise<{ experimentId: string; ref: string; version: number }[]> {
    const rows = await this.sql.all(
      `SELECT d.experiment_id, d.ref, d.version FROM experiment_datasets d JOIN experiments e ON e.id = d.experiment_id
       WHERE d.dataset = ? ${version === undefined ? '' : 'AND d.version = ?'} ORDER BY e.submitted_at, e.id`,
      version === undefined ? [dataset] : [dataset, version],
    );
    return rows.map((row) => ({
      experimentId: row.experiment_id as string,
      ref: row.ref as string,
      version: row.version as number,
    }));
  }

  async tagOf(id: string): Promise<string> {
    const row = await this.sql.get<{ tag: string }>('SELECT tag FROM experiments WHERE id = ?', [id]);
    if (!row) throw new Error(`catalog has no experiment ${id}`);
    return row.tag;
  }

  /** Records without their bulky fields (patch, log tail), newest first. */
  async list(filter: {
    tag?: string;
    status?: string;
    category?: string;
    nearMiss?: boolean;
    limit?: number;
    /** Rows to skip (paging); the order is total, so pages neither overlap nor miss a row. */
    offset?: number;
    order?: 'newest' | 'oldest';
  }): Promise<Omit<ExperimentRecord, 'events' | 'artifacts'>[]> {
    const where: string[] = [];
    const params: string[] = [];
    if (filter.tag) (where.push('tag = ?'), params.push(filter.tag));
    if (filter.status) (where.push('status = ?'), params.push(filter.status));
    if (filter.category) (where.push('category = ?'), params.push(filter.category));
    if (filter.nearMiss) where.push('near_miss = 1');
    const order = filter.order === 'oldest' ? 'ASC' : 'DESC';
    const limit = filter.limit ? `LIMIT ${Math.floor(filter.limit)}` : filter.offset ? this.sql.dialect.noLimit : '';
    const sql = `SELECT id, tag, category, hypothesis, description, status, reason, decision, action, metric_name, metric_direction, metric, best, delta,
                        near_miss, consecutive_crashes, should_abort, sequence, rule, failed_guard, repo, commit_sha, command, gpu, worker, accelerator_class, queued_ms,
                        attempts, submitted_at, started_at, ended_at, training_seconds, exit_code, signal, peak_vram_mb, origin_kind, origin_id, metrics
                 FROM experiments ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY COALESCE(sequence, 1000000000000000000) ${order}, submitted_at ${order}, id ${order}
                 ${limit} ${filter.offset ? `OFFSET ${Math.floor(filter.offset)}` : ''}`;
    return (await this.sql.all(sql, params)).map(decode);
  }

  /**
   * The GPU telemetry of a tag's newest runs that have some (their series feed the report's
   * charts), newest first; runs without telemetry (CPU slots, no nvidia-smi) are left out.
   */
  async gpuTelemetryOfTag(tag: string, limit: number): Promise<RunTelemetryRow[]> {
    const rows = await this.sql.all<{ id: string; hypothesis: string; gpu_telemetry: string }>(
      `SELECT id, hypothesis, gpu_telemetry FROM experiments
       WHERE tag = ? AND gpu_telemetry LIKE '{"available":true%'
       ORDER BY submitted_at DESC, id DESC LIMIT ${Math.floor(limit)}`,
      [tag],
    );
    return rows.map((row) => ({
      id: row.id,
      hypothesis: row.hypothesis,
      gpuTelemetry: JSON.parse(row.gpu_telemetry) as GpuTelemetry,
    }));
  }

  /**
   * Per tag: runs by kind under the crash rule of outcome.ts (crashes: command_failed, oom,
   * timed_out; refusals and infrastructure failures apart), the rates as outcomeRates defines
   * them, and the best kept metric in the tag's direction.
   */
  async tags(): Promise<TagRow[]> {
    const inList = (statuses: readonly string[]) => `status IN (${statuses.map((s) => `'${s}'`).join(', ')})`;
    const count = (condition: string) => `SUM(CASE WHEN sequence IS NOT NULL AND ${condition} THEN 1 ELSE 0 END)`;
    const rows = await this.sql.all<Omit<TagRow, 'runs' | 'keepRate' | 'crashRate'>>(
      `SELECT tag, COUNT(*) AS total,
              ${count(`status = 'completed' AND decision = 'keep'`)} AS kept,
              ${count(`status = 'completed' AND (decision IS NULL OR decision <> 'keep')`)} AS discarded,
              ${count(crashSql())} AS crashed,
              ${count(inList(REFUSAL_STATUSES))} AS refused,
              ${count(inList(INFRASTRUCTURE_STATUSES))} AS infrastructure,
              ${count(`status = 'canceled'`)} AS canceled,
              CASE MAX(metric_direction)
                WHEN 'maximize' THEN MAX(CASE WHEN decision = 'keep' AND status = 'completed' THEN metric END)
                ELSE MIN(CASE WHEN decision = 'keep' AND status = 'completed' THEN metric END) END AS best,
              MAX(metric_direction) AS direction, MAX(submitted_at) AS "lastAt"
       FROM experiments GROUP BY tag ORDER BY "lastAt" DESC`,
    );
    return rows.map((row) => ({ ...row, ...outcomeRates(row) }));
  }

  async strategy(
    tag: string,
  ): Promise<{ mode: string; reason: string; manual: boolean; updatedAt: string } | undefined> {
    const row = await this.sql.get('SELECT mode, reason, manual, updated_at FROM strategy WHERE tag = ?', [tag]);
    return row
      ? {
          mode: row.mode as string,
          reason: row.reason as string,
          manual: row.manual === 1,
          updatedAt: row.updated_at as string,
        }
      : undefined;
  }

  async auditTrail(target: string): Promise<AuditEntry[]> {
    return (await this.sql.all(`SELECT * FROM audit WHERE target = ? ORDER BY at, rowid`, [target])).map((row) => ({
      at: row.at as string,
      action: row.action as string,
      target: row.target as string,
      actor: row.actor as string | null,
      role: row.role as string | null,
      credentialId: row.credential_id as string | null,
      allowed: row.allowed === 1,
      detail: row.detail as string | null,
    }));
  }

  async isRevoked(certificate: { id: string; name: string; issuedAt: string }): Promise<boolean> {
    const byId = await this.sql.get(`SELECT 1 AS one FROM revocations WHERE credential = ?`, [certificate.id]);
    if (byId) return true;
    const byName = await this.sql.get<{ revoked_at: string }>(
      `SELECT revoked_at FROM revocations WHERE credential = ?`,
      [`name:${certificate.name}`],
    );
    return byName !== undefined && certificate.issuedAt <= byName.revoked_at;
  }

  /** Whether content with this sha256 is kept. */
  async hasBlob(sha256: string): Promise<boolean> {
    return (await this.sql.get('SELECT 1 AS one FROM blobs WHERE sha256 = ?', [sha256])) !== undefined;
  }

  /**
   * Characters [offset, offset + length) of the content with this sha256 (offsets in characters:
   * a page never cuts one), its size in bytes, and where the next page starts (null at the end);
   * undefined when none is kept.
   */
  async blobPage(
    sha256: string,
    offset: number,
    length: number,
  ): Promise<{ text: string; bytes: number; nextOffset: number | null } | undefined> {
    const row = await this.sql.get<{ text: string; chars: number; bytes: number }>(
      'SELECT substr(content, ?, ?) AS text, length(content) AS chars, bytes FROM blobs WHERE sha256 = ?',
      [offset + 1, length, sha256],
    );
    if (!row) return undefined;
    const end = offset + [...row.text].length;
    return { text: row.text, bytes: Number(row.bytes), nextOffset: end < Number(row.chars) ? end : null };
  }

  /** Models, versions, promotions and alias history (catalog/models.ts). */
  get models(): ModelCatalog {
    return new ModelCatalog(this.sql);
  }

  /** Dataset versions, shards, gates and alerts (catalog/datasets.ts). */
  get datasets(): DatasetRecords {
    return new DatasetRecords(this.sql);
  }

  /** The newest version of `dataset` that passed every gate, or null: what an experiment's `--dataset NAME` resolves to. */
  latestPassedDatasetVersion(dataset: string): Promise<DatasetVersionRecord | null> {
    return this.datasets.latestPassed(dataset);
  }

  /** One dataset version with its shards (any status: check `status === 'passed'` before using it), or null. */
  datasetVersion(dataset: string, version: number): Promise<DatasetVersionRecord | null> {
    return this.datasets.version(dataset, version);
  }
}

function openSqliteReader(file: string): SqliteDatabase {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return new SqliteDatabase(db, file);
}

function openSqliteWriter(file: string): SqliteDatabase {
  // Private (0600; SQLite gives its -wal and -shm files the same mode), in a directory made 0700.
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: PRIVATE_DIR_MODE });
  ensurePrivateFileSync(file);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  return new SqliteDatabase(db, file);
}

/**
 * The operating record's writer, opened only by orchestrators for their activities, which are the
 * only code that writes the record. It alone applies migrations. SQLite: one file (inspectable
 * with `sqlite3`, WAL mode so readers read while it writes). PostgreSQL: one database that several
 * orchestrators share; every write is idempotent, and a record update older than one applied
 * (a late retry from another orchestrator) changes nothing.
 */
export class Catalog extends CatalogReader {
  /** Opens (creating a SQLite file, or the tables in an empty PostgreSQL database) and migrates. */
  static override async open(location: string): Promise<Catalog> {
    const sql = isPostgresUrl(location) ? PostgresDatabase.open(location) : openSqliteWriter(location);
    try {
      await migrate(sql, MIGRATIONS);
    } catch (error) {
      await sql.close();
      throw error;
    }
    return new Catalog(sql, sql.location);
  }

  /** Applies what the run reported; a row exists from the first update (submission) on. */
  async apply(update: RecordUpdate): Promise<void> {
    const now = new Date().toISOString();
    const columns: Record<string, SqlValue> = { updated_at: now };
    // Public already when it comes from recordExperiment (secrets as keyed digests); made so again here.
    const request = update.request && publicRequest(update.request);
    if (request) {
      Object.assign(columns, {
        tag: request.tag,
        category: request.category,
        hypothesis: request.hypothesis,
        description: request.description,
        metric_name: request.metric?.name ?? DEFAULT_METRIC.name,
        metric_direction: request.metric?.direction ?? DEFAULT_METRIC.direction,
        repo: request.repo,
        commit_sha: request.commit,
        command: JSON.stringify(request.command),
        request: JSON.stringify(request),
        datasets: JSON.stringify(request.datasets),
        submitted_at: update.submittedAt ?? now,
        status: update.status ?? 'submitted',
      });
    }
    if (update.revision !== undefined) columns.revision = update.revision;
    if (update.submittedBy) columns.submitted_by = update.submittedBy;
    if (update.origin) Object.assign(columns, { origin_kind: update.origin.kind, origin_id: update.origin.of });
    if (update.metric)
      Object.assign(columns, { metric_name: update.metric.name, metric_direction: update.metric.direction });
    if (update.status) columns.status = update.status;
    if (update.reason !== undefined) columns.reason = update.reason;
    if (update.attempts !== undefined) columns.attempts = update.attempts;
    if (update.validation) {
      Object.assign(columns, {
        resolved_config: JSON.stringify(update.validation.resolvedConfig ?? null),
        patch_sha256: update.validation.patch?.sha256 ?? null,
        patch_bytes: update.validation.patch?.bytes ?? null,
        patch_uri: update.validation.patch?.uri ?? null,
        patch_files: JSON.stringify(update.validation.patch?.files ?? null),
      });
    }
    if (update.environment) columns.environment = JSON.stringify(update.environment);
    if (update.attemptRecords) columns.attempt_records = JSON.stringify(update.attemptRecords);
    if (update.placement) {
      Object.assign(columns, {
        placement: JSON.stringify(update.placement),
        gpu: update.placement.slotId,
        worker: update.placement.host,
        accelerator_class: update.placement.acceleratorClass,
        queued_ms: update.placement.queuedMs,
      });
    }
    const training = update.training;
    if (training) {
      const peak = training.metrics?.peak_vram_mb;
      Object.assign(columns, {
        started_at: training.startedAt,
        ended_at: training.endedAt,
        // The record's slotSeconds (see FIELD_OF_COLUMN).
        training_seconds: (Date.parse(training.endedAt) - Date.parse(training.startedAt)) / 1000,
        exit_code: training.exitCode,
        signal: training.signal,
        metrics: JSON.stringify(training.metrics),
        peak_vram_mb: typeof peak === 'number' ? peak : null,
        log_path: training.logPath,
        log_tail: training.logTail,
        heartbeats: JSON.stringify(training.heartbeats ?? null),
        timings: JSON.stringify(training.timings ?? null),
        phase: training.phase ?? null,
        containment: training.containment ?? null,
        peak_memory_bytes: training.peakMemoryBytes ?? null,
        oom_kills: training.oomKills ?? null,
        gpu_telemetry: JSON.stringify(training.gpuTelemetry ?? null),
        warnings: JSON.stringify(telemetryWarnings(training.gpuTelemetry)),
      });
    }
    const decision = update.decision;
    if (decision) {
      Object.assign(columns, {
        decision: decision.decision,
        action: decision.action,
        metric: decision.metric,
        best: decision.best,
        delta: decision.delta,
        near_miss: decision.nearMiss ? 1 : 0,
        consecutive_crashes: decision.consecutiveCrashes,
        should_abort: decision.shouldAbort ? 1 : 0,
        sequence: decision.sequence,
        rule: decision.rule,
        failed_guard: decision.failedGuard ?? null,
      });
    }
    const id = update.experimentId;
    const names = Object.keys(columns);
    const values = names.map((n) => columns[n]!);
    // A revision older than the row's was overtaken (a retry that finished late): the row stays.
    const newer = (table: string) => `(${table}.revision IS NULL OR ${table}.revision < ?)`;
    await this.sql.transaction(async (tx) => {
      if (request) {
        const updated = names.filter((n) => n !== 'submitted_at' && n !== 'status');
        await tx.run(
          `INSERT INTO experiments (id, ${names.join(', ')}) VALUES (?, ${names.map(() => '?').join(', ')})
           ON CONFLICT (id) DO UPDATE SET ${updated.map((n) => `${n} = excluded.${n}`).join(', ')}
           ${update.revision !== undefined ? `WHERE ${newer('experiments')}` : ''}`,
          [id, ...values, ...(update.revision !== undefined ? [update.revision] : [])],
        );
      } else {
        const result = await tx.run(
          `UPDATE experiments SET ${names.map((n) => `${n} = ?`).join(', ')} WHERE id = ?
           ${update.revision !== undefined ? `AND ${newer('experiments')}` : ''}`,
          [...values, id, ...(update.revision !== undefined ? [update.revision] : [])],
        );
        if (result.changes === 0 && !(await tx.get('SELECT 1 AS one FROM experiments WHERE id = ?', [id])))
          throw new Error(`catalog has no experiment ${id} (its submission was never recorded)`);
      }
      await insertFacts(tx, id, update);
    });
  }

  /** Keeps `content` by its sha256, once (content-addressed: writing it again changes nothing). */
  async putBlob(sha256: string, content: string): Promise<void> {
    const actual = crypto.createHash('sha256').update(content, 'utf8').digest('hex');
    if (actual !== sha256) throw new Error(`content hashes to ${actual}, not the ${sha256} it was stored as`);
    await this.sql.run(
      'INSERT INTO blobs (sha256, bytes, content, stored_at) VALUES (?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING',
      [sha256, Buffer.byteLength(content, 'utf8'), content, new Date().toISOString()],
    );
  }

  /** After each decision: the tag's mode by the deterministic rule, unless an operator set one. */
  async refreshStrategy(tag: string): Promise<void> {
    if ((await this.strategy(tag))?.manual) return;
    const { mode, reason } = chooseMode(resultRuns(await this.list({ tag, order: 'oldest' })).map(toRunSummary));
    await this.setStrategy(tag, mode, reason, false);
  }

  async setStrategy(tag: string, mode: string, reason: string, manual: boolean): Promise<void> {
    await this.sql.run(
      `INSERT INTO strategy (tag, mode, reason, manual, updated_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (tag) DO UPDATE SET mode = excluded.mode, reason = excluded.reason, manual = excluded.manual, updated_at = excluded.updated_at`,
      [tag, mode, reason, manual ? 1 : 0, new Date().toISOString()],
    );
  }

  /**
   * One line of the audit trail: who asked for what on which target, and whether it was allowed.
   * A line with a source replaces that source's earlier one: the verification that ran last (the
   * one its workflow went on with, when a task was re-executed) is the one on record.
   */
  async audit(entry: AuditEntry): Promise<void> {
    await this.sql.run(
      `INSERT INTO audit (at, action, target, actor, role, credential_id, allowed, detail, source)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (source) DO UPDATE SET at = excluded.at, action = excluded.action, target = excluded.target,
         actor = excluded.actor, role = excluded.role, credential_id = excluded.credential_id,
         allowed = excluded.allowed, detail = excluded.detail`,
      [
        entry.at,
        entry.action,
        entry.target,
        entry.actor,
        entry.role,
        entry.credentialId,
        entry.allowed ? 1 : 0,
        entry.detail,
        entry.source ?? null,
      ],
    );
  }

  /** Revokes one credential (by id) or every credential of a name issued until now (`name:` prefix). */
  async revoke(credential: string, by: string): Promise<void> {
    await this.sql.run(
      `INSERT INTO revocations (credential, revoked_at, revoked_by) VALUES (?, ?, ?)
       ON CONFLICT (credential) DO UPDATE SET revoked_at = excluded.revoked_at, revoked_by = excluded.revoked_by`,
      [credential, new Date().toISOString(), by],
    );
  }
}

/** The timeline, pinned datasets and artifacts of an update: keyed rows, so a retry adds nothing. */
async function insertFacts(tx: SqlRunner, id: string, update: RecordUpdate): Promise<void> {
  for (const event of update.events ?? []) {
    // Either key absorbs a write delivered again: a retry (same time) or a re-execution (same place).
    await tx.run(
      'INSERT INTO events (experiment_id, seq, at, status, note) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      [id, event.seq ?? null, event.at, event.status, event.note ?? null],
    );
  }
  for (const pinned of update.datasetVersions ?? []) {
    await tx.run(
      `INSERT INTO experiment_datasets (experiment_id, ref, dataset, version, manifest_sha256, records, shards)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (experiment_id, ref) DO UPDATE SET dataset = excluded.dataset, version = excluded.version,
         manifest_sha256 = excluded.manifest_sha256, records = excluded.records, shards = excluded.shards`,
      [
        id,
        pinned.ref,
        pinned.dataset,
        pinned.version,
        pinned.manifestSha256,
        pinned.records,
        JSON.stringify(pinned.shards),
      ],
    );
  }
  for (const artifact of update.training?.artifacts ?? []) {
    await tx.run(
      `INSERT INTO artifacts (experiment_id, path, sha256, bytes, uri) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (experiment_id, path) DO UPDATE SET sha256 = excluded.sha256, bytes = excluded.bytes, uri = excluded.uri`,
      [id, artifact.path, artifact.sha256, artifact.bytes, artifact.uri ?? null],
    );
  }
}

export interface AuditEntry {
  at: string;
  action: string;
  target: string;
  actor: string | null;
  role: string | null;
  credentialId: string | null;
  allowed: boolean;
  detail: string | null;
  /** The activity that verified (workflow/run/activity id), when one did: its line is written once. */
  source?: string | null;
}
