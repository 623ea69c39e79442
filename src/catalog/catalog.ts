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
import { resultRuns, toRunSummary } from './reports.js';
import { MIGRATIONS } from './schema.js';
import { DatasetRecords, type DatasetVersionRecord } from './datasets.js';
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
];

function camel(column: string): string {
  return column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function decode(row: Row): Omit<ExperimentRecord, 'events' | 'artifacts'> {
  const out: Row = {};
  for (const [column, value] of Object.entries(row)) {
    const key = column === 'commit_sha' ? 'commit' : camel(column);
    out[key] = JSON_COLUMNS.includes(column) && typeof value === 'string' ? JSON.parse(value) : value;
  }
  out.nearMiss = row.near_miss === 1;
  out.shouldAbort = row.should_abort === null ? null : row.should_abort === 1;
  return out as unknown as Omit<ExperimentRecord, 'events' | 'artifacts'>;
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
 * The connection is opened read-only and never migrates: a reader cannot write the record, and a
 * catalog of another schema version is refused with what to do rather than read wrongly.
 */
export class CatalogReader {
  protected constructor(
    readonly db: Database.Database,
    readonly file: string,
  ) {}

  /** Opens an existing catalog for reading (WAL: safe while the orchestrator writes). */
  static open(file: string): CatalogReader {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== MIGRATIONS.length) {
      db.close();
      throw new Error(
        version > MIGRATIONS.length
          ? `catalog ${file} has schema version ${version}, newer than this expctl (${MIGRATIONS.length}); upgrade expctl`
          : `catalog ${file} has schema version ${version}, older than this expctl (${MIGRATIONS.length}); ` +
            "start this version's orchestrator (`expctl dev` or `expctl orchestrator`) once: only it migrates the catalog",
      );
    }
    return new CatalogReader(db, file);
  }

  close(): void {
    this.db.close();
  }

  get(id: string): ExperimentRecord | undefined {
    const row = this.db.prepare('SELECT * FROM experiments WHERE id = ?').get(id) as Row | undefined;
    if (!row) return undefined;
    return {
      ...decode(row),
      events: this.db
        .prepare('SELECT at, status, note FROM events WHERE experiment_id = ? ORDER BY at, rowid')
        .all(id) as ExperimentRecord['events'],
      artifacts: this.db
        .prepare('SELECT path, sha256, bytes FROM artifacts WHERE experiment_id = ? ORDER BY path')
        .all(id) as ExperimentRecord['artifacts'],
      datasetVersions: this.pinnedDatasets(id),
    };
  }

  /** The dataset versions an experiment was pinned to, in the order of its references. */
  pinnedDatasets(experimentId: string): PinnedDataset[] {
    const rows = this.db
      .prepare(
        'SELECT ref, dataset, version, manifest_sha256, records, shards FROM experiment_datasets WHERE experiment_id = ? ORDER BY rowid',
      )
      .all(experimentId) as Row[];
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
  derivedExperiments(experimentId: string): { id: string; kind: string }[] {
    return this.db
      .prepare('SELECT id, origin_kind AS kind FROM experiments WHERE origin_id = ? ORDER BY submitted_at, id')
      .all(experimentId) as { id: string; kind: string }[];
  }

  /** The experiments pinned to a dataset version (all versions of it when none is given), oldest first. */
  experimentsUsing(dataset: string, version?: number): { experimentId: string; ref: string; version: number }[] {
    const rows = this.db
      .prepare(
        `SELECT d.experiment_id, d.ref, d.version FROM experiment_datasets d JOIN experiments e ON e.id = d.experiment_id
         WHERE d.dataset = ? ${version === undefined ? '' : 'AND d.version = ?'} ORDER BY e.submitted_at, e.id`,
      )
      .all(...(version === undefined ? [dataset] : [dataset, version])) as Row[];
    return rows.map((row) => ({
      experimentId: row.experiment_id as string,
      ref: row.ref as string,
      version: row.version as number,
    }));
  }

  tagOf(id: string): string {
    const row = this.db.prepare('SELECT tag FROM experiments WHERE id = ?').get(id) as { tag: string } | undefined;
    if (!row) throw new Error(`catalog has no experiment ${id}`);
    return row.tag;
  }

  /** Records without their bulky fields (patch, log tail), newest first. */
  list(filter: {
    tag?: string;
    status?: string;
    category?: string;
    nearMiss?: boolean;
    limit?: number;
    /** Rows to skip (paging); the order is total, so pages neither overlap nor miss a row. */
    offset?: number;
    order?: 'newest' | 'oldest';
  }): Omit<ExperimentRecord, 'events' | 'artifacts'>[] {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.tag) (where.push('tag = ?'), params.push(filter.tag));
    if (filter.status) (where.push('status = ?'), params.push(filter.status));
    if (filter.category) (where.push('category = ?'), params.push(filter.category));
    if (filter.nearMiss) where.push('near_miss = 1');
    const order = filter.order === 'oldest' ? 'ASC' : 'DESC';
    const sql = `SELECT id, tag, category, hypothesis, description, status, reason, decision, action, metric_name, metric_direction, metric, best, delta,
                        near_miss, consecutive_crashes, should_abort, sequence, rule, failed_guard, repo, commit_sha, command, gpu, worker, accelerator_class, queued_ms,
                        attempts, submitted_at, started_at, ended_at, training_seconds, exit_code, signal, peak_vram_mb, origin_kind, origin_id, metrics
                 FROM experiments ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY COALESCE(sequence, 1e18) ${order}, submitted_at ${order}, id ${order}
                 ${filter.limit ? `LIMIT ${Math.floor(filter.limit)}` : filter.offset ? 'LIMIT -1' : ''}
                 ${filter.offset ? `OFFSET ${Math.floor(filter.offset)}` : ''}`;
    return (this.db.prepare(sql).all(...params) as Row[]).map(decode);
  }

  /**
   * Per tag: runs by kind under the crash rule of outcome.ts (crashes: command_failed, oom,
   * timed_out; refusals and infrastructure failures apart), the rates as outcomeRates defines
   * them, and the best kept metric in the tag's direction.
   */
  tags(): TagRow[] {
    const inList = (statuses: readonly string[]) => `status IN (${statuses.map((s) => `'${s}'`).join(', ')})`;
    const decided = 'sequence IS NOT NULL';
    const rows = this.db
      .prepare(
        `SELECT tag, COUNT(*) AS total,
                       SUM(${decided} AND status = 'completed' AND decision = 'keep') AS kept,
                       SUM(${decided} AND status = 'completed' AND (decision IS NULL OR decision <> 'keep')) AS discarded,
                       SUM(${decided} AND ${crashSql()}) AS crashed,
                       SUM(${decided} AND ${inList(REFUSAL_STATUSES)}) AS refused,
                       SUM(${decided} AND ${inList(INFRASTRUCTURE_STATUSES)}) AS infrastructure,
                       SUM(${decided} AND status = 'canceled') AS canceled,
                       CASE MAX(metric_direction)
                         WHEN 'maximize' THEN MAX(CASE WHEN decision = 'keep' AND status = 'completed' THEN metric END)
                         ELSE MIN(CASE WHEN decision = 'keep' AND status = 'completed' THEN metric END) END AS best,
                       MAX(metric_direction) AS direction, MAX(submitted_at) AS lastAt
                FROM experiments GROUP BY tag ORDER BY lastAt DESC`,
      )
      .all() as Omit<TagRow, 'runs' | 'keepRate' | 'crashRate'>[];
    return rows.map((row) => ({ ...row, ...outcomeRates(row) }));
  }

  strategy(tag: string): { mode: string; reason: string; manual: boolean; updatedAt: string } | undefined {
    const row = this.db.prepare('SELECT mode, reason, manual, updated_at FROM strategy WHERE tag = ?').get(tag) as
      | Row
      | undefined;
    return row
      ? {
          mode: row.mode as string,
          reason: row.reason as string,
          manual: row.manual === 1,
          updatedAt: row.updated_at as string,
        }
      : undefined;
  }

  auditTrail(target: string): AuditEntry[] {
    return (this.db.prepare(`SELECT * FROM audit WHERE target = ? ORDER BY at, rowid`).all(target) as Row[]).map(
      (row) => ({
        at: row.at as string,
        action: row.action as string,
        target: row.target as string,
        actor: row.actor as string | null,
        role: row.role as string | null,
        credentialId: row.credential_id as string | null,
        allowed: row.allowed === 1,
        detail: row.detail as string | null,
      }),
    );
  }

  isRevoked(certificate: { id: string; name: string; issuedAt: string }): boolean {
    const byId = this.db.prepare(`SELECT 1 FROM revocations WHERE credential = ?`).get(certificate.id);
    if (byId) return true;
    const byName = this.db
      .prepare(`SELECT revoked_at FROM revocations WHERE credential = ?`)
      .get(`name:${certificate.name}`) as { revoked_at: string } | undefined;
    return byName !== undefined && certificate.issuedAt <= byName.revoked_at;
  }

  /** Dataset versions, shards, gates and alerts (catalog/datasets.ts). */
  get datasets(): DatasetRecords {
    return new DatasetRecords(this.db);
  }

  /** The newest version of `dataset` that passed every gate, or null: what an experiment's `--dataset NAME` resolves to. */
  latestPassedDatasetVersion(dataset: string): DatasetVersionRecord | null {
    return this.datasets.latestPassed(dataset);
  }

  /** One dataset version with its shards (any status: check `status === 'passed'` before using it), or null. */
  datasetVersion(dataset: string, version: number): DatasetVersionRecord | null {
    return this.datasets.version(dataset, version);
  }
}

/**
 * The operating record's writer: one SQLite file (inspectable with `sqlite3`), opened only by the
 * orchestrator for its activities, which are the only code that writes the record. It alone
 * applies migrations. WAL mode, so readers read while it writes.
 */
export class Catalog extends CatalogReader {
  constructor(file: string) {
    // Private (0600; SQLite gives its -wal and -shm files the same mode), in a directory made 0700.
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: PRIVATE_DIR_MODE });
    ensurePrivateFileSync(file);
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    super(db, file);
    this.migrate();
  }

  private migrate(): void {
    const applied = this.db.pragma('user_version', { simple: true }) as number;
    if (applied > MIGRATIONS.length)
      throw new Error(
        `catalog ${this.file} has schema version ${applied}, newer than this expctl (${MIGRATIONS.length}); upgrade expctl`,
      );
    const run = this.db.transaction(() => {
      for (let i = applied; i < MIGRATIONS.length; i++) this.db.exec(MIGRATIONS[i]!);
      this.db.pragma(`user_version = ${MIGRATIONS.length}`);
    });
    run();
  }

  /** Applies what the run reported; a row exists from the first update (submission) on. */
  apply(update: RecordUpdate): void {
    const now = new Date().toISOString();
    const columns: Row = { updated_at: now };
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
        patch: update.validation.patch?.text ?? null,
        patch_sha256: update.validation.patch?.sha256 ?? null,
        patch_files: JSON.stringify(update.validation.patch?.files ?? null),
      });
    }
    if (update.environment) columns.environment = JSON.stringify(update.environment);
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
    const write = this.db.transaction(() => {
      const names = Object.keys(columns);
      if (request) {
        this.db
          .prepare(
            `INSERT INTO experiments (id, ${names.join(', ')}) VALUES (@id, ${names.map((n) => `@${n}`).join(', ')})
                    ON CONFLICT (id) DO UPDATE SET ${names
                      .filter((n) => n !== 'submitted_at' && n !== 'status')
                      .map((n) => `${n} = excluded.${n}`)
                      .join(', ')}`,
          )
          .run({ id: update.experimentId, ...columns });
      } else {
        const result = this.db
          .prepare(`UPDATE experiments SET ${names.map((n) => `${n} = @${n}`).join(', ')} WHERE id = @id`)
          .run({ id: update.experimentId, ...columns });
        if (result.changes === 0)
          throw new Error(`catalog has no experiment ${update.experimentId} (its submission was never recorded)`);
      }
      for (const event of update.events ?? []) {
        this.db
          .prepare('INSERT OR IGNORE INTO events (experiment_id, at, status, note) VALUES (?, ?, ?, ?)')
          .run(update.experimentId, event.at, event.status, event.note ?? null);
      }
      for (const pinned of update.datasetVersions ?? []) {
        this.db
          .prepare(
            `INSERT OR REPLACE INTO experiment_datasets (experiment_id, ref, dataset, version, manifest_sha256, records, shards)
             VALUES (?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(
            update.experimentId,
            pinned.ref,
            pinned.dataset,
            pinned.version,
            pinned.manifestSha256,
            pinned.records,
            JSON.stringify(pinned.shards),
          );
      }
      for (const artifact of training?.artifacts ?? []) {
        this.db
          .prepare('INSERT OR REPLACE INTO artifacts (experiment_id, path, sha256, bytes) VALUES (?, ?, ?, ?)')
          .run(update.experimentId, artifact.path, artifact.sha256, artifact.bytes);
      }
    });
    write();
  }

  /** After each decision: the tag's mode by the deterministic rule, unless an operator set one. */
  refreshStrategy(tag: string): void {
    if (this.strategy(tag)?.manual) return;
    const { mode, reason } = chooseMode(resultRuns(this.list({ tag, order: 'oldest' })).map(toRunSummary));
    this.setStrategy(tag, mode, reason, false);
  }

  setStrategy(tag: string, mode: string, reason: string, manual: boolean): void {
    this.db
      .prepare(
        `INSERT INTO strategy (tag, mode, reason, manual, updated_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (tag) DO UPDATE SET mode = excluded.mode, reason = excluded.reason, manual = excluded.manual, updated_at = excluded.updated_at`,
      )
      .run(tag, mode, reason, manual ? 1 : 0, new Date().toISOString());
  }

  /** One line of the audit trail: who asked for what on which target, and whether it was allowed. */
  audit(entry: AuditEntry): void {
    this.db
      .prepare(
        `INSERT INTO audit (at, action, target, actor, role, credential_id, allowed, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        entry.at,
        entry.action,
        entry.target,
        entry.actor,
        entry.role,
        entry.credentialId,
        entry.allowed ? 1 : 0,
        entry.detail,
      );
  }

  /** Revokes one credential (by id) or every credential of a name issued until now (`name:` prefix). */
  revoke(credential: string, by: string): void {
    this.db
      .prepare(
        `INSERT INTO revocations (credential, revoked_at, revoked_by) VALUES (?, ?, ?)
         ON CONFLICT (credential) DO UPDATE SET revoked_at = excluded.revoked_at, revoked_by = excluded.revoked_by`,
      )
      .run(credential, new Date().toISOString(), by);
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
}
