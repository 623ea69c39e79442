/**
 * The catalog's schema, as ordered migrations, written in SQLite's SQL; migrate.ts applies them to
 * PostgreSQL too, translated. How many have run: `PRAGMA user_version` (SQLite) or the row of
 * `expctl_schema` (PostgreSQL); a newer expctl applies the rest on open. Never edit a shipped
 * migration: add one.
 */
export const MIGRATIONS: string[] = [
  `CREATE TABLE experiments (
     id TEXT PRIMARY KEY,
     tag TEXT NOT NULL,
     category TEXT NOT NULL,
     hypothesis TEXT NOT NULL,
     description TEXT NOT NULL DEFAULT '',
     status TEXT NOT NULL,
     reason TEXT,
     decision TEXT,
     action TEXT,
     metric_name TEXT NOT NULL,
     metric_direction TEXT NOT NULL,
     metric REAL,
     best REAL,
     delta REAL,
     near_miss INTEGER NOT NULL DEFAULT 0,
     consecutive_crashes INTEGER,
     should_abort INTEGER,
     sequence INTEGER,
     repo TEXT NOT NULL,
     commit_sha TEXT NOT NULL,
     command TEXT NOT NULL,
     request TEXT NOT NULL,
     resolved_config TEXT,
     patch TEXT,
     patch_sha256 TEXT,
     patch_files TEXT,
     datasets TEXT,
     environment TEXT,
     placement TEXT,
     gpu TEXT,
     worker TEXT,
     accelerator_class TEXT,
     queued_ms INTEGER,
     attempts INTEGER NOT NULL DEFAULT 0,
     submitted_at TEXT NOT NULL,
     started_at TEXT,
     ended_at TEXT,
     training_seconds REAL,
     exit_code INTEGER,
     signal TEXT,
     metrics TEXT,
     peak_vram_mb REAL,
     log_path TEXT,
     log_tail TEXT,
     heartbeats TEXT,
     origin_kind TEXT,
     origin_id TEXT,
     updated_at TEXT NOT NULL
   )`,
  `CREATE INDEX experiments_tag ON experiments (tag, submitted_at)`,
  `CREATE INDEX experiments_tag_status ON experiments (tag, status)`,
  `CREATE TABLE events (
     experiment_id TEXT NOT NULL REFERENCES experiments (id),
     at TEXT NOT NULL,
     status TEXT NOT NULL,
     note TEXT,
     PRIMARY KEY (experiment_id, at, status)
   )`,
  `CREATE TABLE artifacts (
     experiment_id TEXT NOT NULL REFERENCES experiments (id),
     path TEXT NOT NULL,
     sha256 TEXT NOT NULL,
     bytes INTEGER NOT NULL,
     PRIMARY KEY (experiment_id, path)
   )`,
  `CREATE TABLE strategy (
     tag TEXT PRIMARY KEY,
     mode TEXT NOT NULL,
     reason TEXT NOT NULL,
     manual INTEGER NOT NULL DEFAULT 0,
     updated_at TEXT NOT NULL
   )`,
  // The keep rule that decided (TagDecision.rule), and the guard that failed with guard_failed.
  `ALTER TABLE experiments ADD COLUMN rule TEXT`,
  `ALTER TABLE experiments ADD COLUMN failed_guard TEXT`,
  // Where the time went (RunTimings), the phase a run ended in, and its containment evidence.
  `ALTER TABLE experiments ADD COLUMN timings TEXT`,
  `ALTER TABLE experiments ADD COLUMN phase TEXT`,
  `ALTER TABLE experiments ADD COLUMN containment TEXT`,
  `ALTER TABLE experiments ADD COLUMN peak_memory_bytes INTEGER`,
  `ALTER TABLE experiments ADD COLUMN oom_kills INTEGER`,
  // Who did what (identity, role, credential), allowed or refused; and revoked credentials.
  `CREATE TABLE audit (
     at TEXT NOT NULL,
     action TEXT NOT NULL,
     target TEXT NOT NULL,
     actor TEXT,
     role TEXT,
     credential_id TEXT,
     allowed INTEGER NOT NULL,
     detail TEXT
   )`,
  `CREATE INDEX audit_target ON audit (target, at)`,
  `ALTER TABLE experiments ADD COLUMN submitted_by TEXT`,
  `CREATE TABLE revocations (
     credential TEXT PRIMARY KEY,
     revoked_at TEXT NOT NULL,
     revoked_by TEXT NOT NULL
   )`,
  // The dataset versions each experiment was pinned to when it started (lineage reads it both ways).
  `CREATE TABLE experiment_datasets (
     experiment_id TEXT NOT NULL REFERENCES experiments (id),
     ref TEXT NOT NULL,
     dataset TEXT NOT NULL,
     version INTEGER NOT NULL,
     manifest_sha256 TEXT NOT NULL,
     records INTEGER,
     shards TEXT NOT NULL,
     PRIMARY KEY (experiment_id, ref)
   )`,
  `CREATE INDEX experiment_datasets_version ON experiment_datasets (dataset, version)`,
  // Model promotion (BRIEF §8): versions of a model, promotions with their evidence, alias history.
  `CREATE TABLE model_versions (
     model TEXT NOT NULL,
     version INTEGER NOT NULL,
     experiment_id TEXT NOT NULL,
     artifact_path TEXT NOT NULL,
     artifact_sha256 TEXT NOT NULL,
     promotion_id TEXT NOT NULL,
     holdout_experiment_id TEXT,
     holdout_metric REAL,
     metric_name TEXT NOT NULL,
     direction TEXT NOT NULL,
     created_at TEXT NOT NULL,
     PRIMARY KEY (model, version)
   )`,
  `CREATE INDEX model_versions_experiment ON model_versions (experiment_id)`,
  `CREATE TABLE promotions (
     id TEXT PRIMARY KEY,
     model TEXT NOT NULL,
     alias TEXT NOT NULL,
     experiment_id TEXT NOT NULL,
     status TEXT NOT NULL,
     code TEXT,
     reason TEXT,
     candidate_metric REAL,
     incumbent_version INTEGER,
     incumbent_metric REAL,
     threshold REAL NOT NULL,
     requested_by TEXT NOT NULL,
     decided_by TEXT,
     started_at TEXT NOT NULL,
     ended_at TEXT,
     artifact_path TEXT,
     artifact_sha256 TEXT,
     holdout_experiment_id TEXT,
     approval_required INTEGER NOT NULL DEFAULT 0,
     stages TEXT
   )`,
  `CREATE INDEX promotions_model ON promotions (model, started_at)`,
  `CREATE TABLE alias_moves (
     model TEXT NOT NULL,
     alias TEXT NOT NULL,
     version INTEGER NOT NULL,
     previous_version INTEGER,
     at TEXT NOT NULL,
     by TEXT NOT NULL,
     kind TEXT NOT NULL,
     promotion_id TEXT,
     reason TEXT
   )`,
  `CREATE INDEX alias_moves_alias ON alias_moves (model, alias, at)`,
  // Datasets (issue 12): immutable versions of N shards, late shards, gate results, alerts.
  `CREATE TABLE dataset_versions (
     dataset TEXT NOT NULL,
     version INTEGER NOT NULL,
     status TEXT NOT NULL,
     workflow_id TEXT NOT NULL,
     expected_shards INTEGER NOT NULL,
     opened_at TEXT NOT NULL,
     sealed_at TEXT,
     seal_reason TEXT,
     decided_at TEXT,
     records INTEGER,
     schema TEXT,
     manifest_sha256 TEXT,
     PRIMARY KEY (dataset, version)
   )`,
  `CREATE TABLE dataset_shards (
     dataset TEXT NOT NULL,
     version INTEGER NOT NULL,
     shard_index INTEGER NOT NULL,
     shard_count INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     declared_sha256 TEXT NOT NULL,
     declared_records INTEGER,
     bytes INTEGER NOT NULL,
     records INTEGER,
     schema TEXT,
     format TEXT NOT NULL,
     file_name TEXT NOT NULL,
     arrived_at TEXT NOT NULL,
     deliveries INTEGER NOT NULL DEFAULT 1,
     PRIMARY KEY (dataset, version, shard_index)
   )`,
  `CREATE TABLE late_shards (
     dataset TEXT NOT NULL,
     version INTEGER NOT NULL,
     shard_index INTEGER NOT NULL,
     shard_count INTEGER NOT NULL,
     sha256 TEXT NOT NULL,
     file_name TEXT NOT NULL,
     arrived_at TEXT NOT NULL,
     action TEXT NOT NULL,
     moved_to_version INTEGER
   )`,
  `CREATE INDEX late_shards_version ON late_shards (dataset, version)`,
  `CREATE TABLE gate_results (
     dataset TEXT NOT NULL,
     version INTEGER NOT NULL,
     gate TEXT NOT NULL,
     passed INTEGER NOT NULL,
     code TEXT,
     message TEXT NOT NULL,
     history TEXT,
     at TEXT NOT NULL,
     PRIMARY KEY (dataset, version, gate)
   )`,
  `CREATE INDEX gate_results_at ON gate_results (at)`,
  `CREATE TABLE alerts (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     key TEXT NOT NULL UNIQUE,
     at TEXT NOT NULL,
     kind TEXT NOT NULL,
     subject TEXT NOT NULL,
     code TEXT,
     message TEXT NOT NULL,
     details TEXT,
     command_exit INTEGER,
     command_error TEXT
   )`,
  `CREATE INDEX alerts_at ON alerts (at)`,
  // The newest record update applied (RecordUpdate.revision): late retries change nothing.
  `ALTER TABLE experiments ADD COLUMN revision INTEGER`,
  // An event's place in its run's timeline: a write re-executed with a new time lands on the same
  // row. Rows written before it have none (NULLs never conflict), and keep (experiment, at, status).
  `ALTER TABLE events ADD COLUMN seq INTEGER`,
  `CREATE UNIQUE INDEX events_seq ON events (experiment_id, seq)`,
  // The verification an audit line records (workflow, run, activity): one run again writes its line again.
  `ALTER TABLE audit ADD COLUMN source TEXT`,
  `CREATE UNIQUE INDEX audit_source ON audit (source)`,
  // Content kept whole and by its sha256 (a run's patch, of any size), outside the rows that name
  // it; runs of one commit share one. New runs keep their patch here (`patch` stays for older rows).
  `CREATE TABLE blobs (
     sha256 TEXT PRIMARY KEY,
     bytes INTEGER NOT NULL,
     content TEXT NOT NULL,
     stored_at TEXT NOT NULL
   )`,
  `ALTER TABLE experiments ADD COLUMN patch_bytes INTEGER`,
  // What an operator set on the pool (configuration, drains): a pool started again serves with it.
  `CREATE TABLE pool_settings (
     key TEXT PRIMARY KEY,
     value TEXT NOT NULL,
     updated_at TEXT NOT NULL
   )`,
  // Where the fleet store keeps each artifact (null: recorded before the store, or not uploaded).
  `ALTER TABLE artifacts ADD COLUMN uri TEXT`,
  // Where the fleet store keeps the run's patch (the blob stays the catalog's own copy).
  `ALTER TABLE experiments ADD COLUMN patch_uri TEXT`,
  // Each attempt of a run (host, slot, start and end, how it ended, what it resumed from, what it lost).
  `ALTER TABLE experiments ADD COLUMN attempt_records TEXT`,
  // What the host's sampler saw of a run's GPUs (GpuTelemetry), and the warnings it gives (idle GPUs).
  `ALTER TABLE experiments ADD COLUMN gpu_telemetry TEXT`,
  `ALTER TABLE experiments ADD COLUMN warnings TEXT`,
];
