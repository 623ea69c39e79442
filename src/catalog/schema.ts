/**
 * The catalog's schema, as ordered migrations. `PRAGMA user_version` says how many have run;
 * a newer expctl applies the rest on open. Never edit a shipped migration: add one.
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
];
