/**
 * Applies the catalog's one migration history (schema.ts) to SQLite as written, and to PostgreSQL
 * translated: its types are stricter, a few names are reserved, and it has no implicit rowid.
 */
import type { SqlDatabase } from './sql.js';
import { SqliteDatabase } from './sql.js';

/**
 * Tables read in insertion order (`ORDER BY …, rowid`): SQLite numbers rows itself; on PostgreSQL
 * they get an identity column of the same name, so one query serves both.
 */
const ROWID_TABLES = [
  'events',
  'experiment_datasets',
  'audit',
  'gate_results',
  'late_shards',
  'promotions',
  'alias_moves',
];

/** One SQLite migration as PostgreSQL runs it. */
export function toPostgres(statement: string): string {
  let out = statement
    .replace(/\bINTEGER PRIMARY KEY AUTOINCREMENT\b/g, 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY')
    // 64-bit like SQLite's INTEGER (byte counts pass 2^31); REAL is SQLite's 8-byte float.
    .replace(/\bINTEGER\b/g, 'BIGINT')
    .replace(/\bREAL\b/g, 'DOUBLE PRECISION')
    // `by` is reserved in PostgreSQL (alias_moves.by).
    .replace(/^(\s+)by (TEXT)/m, '$1"by" $2');
  const created = /^CREATE TABLE (\w+) \(/.exec(out);
  if (created && ROWID_TABLES.includes(created[1]!))
    out = out.replace(/^CREATE TABLE (\w+) \(/, 'CREATE TABLE $1 (\n     rowid BIGINT GENERATED ALWAYS AS IDENTITY,');
  return out;
}

function versionMessage(location: string, found: number, expected: number): string {
  return found > expected
    ? `catalog ${location} has schema version ${found}, newer than this expctl (${expected}); upgrade expctl`
    : `catalog ${location} has schema version ${found}, older than this expctl (${expected}); ` +
        "start this version's orchestrator (`expctl dev` or `expctl orchestrator`) once: only it migrates the catalog";
}

async function schemaVersion(sql: SqlDatabase): Promise<number> {
  if (sql instanceof SqliteDatabase) return sql.db.pragma('user_version', { simple: true }) as number;
  const table = await sql.get<{ name: string | null }>(`SELECT to_regclass('expctl_schema')::text AS name`);
  if (!table?.name) return 0;
  return (await sql.get<{ version: number }>('SELECT version FROM expctl_schema'))?.version ?? 0;
}

/** A reader's check: the catalog is at exactly this expctl's schema version, else what to do. */
export async function checkSchemaVersion(sql: SqlDatabase, expected: number): Promise<void> {
  const found = await schemaVersion(sql);
  if (found !== expected) throw new Error(versionMessage(sql.location, found, expected));
}

/**
 * Brings the catalog to the newest version, in one transaction. On PostgreSQL several
 * orchestrators may start at once: the write lock serializes them, and each finds the work done.
 */
export async function migrate(sql: SqlDatabase, migrations: readonly string[]): Promise<void> {
  if (sql instanceof SqliteDatabase) {
    const applied = sql.db.pragma('user_version', { simple: true }) as number;
    if (applied > migrations.length) throw new Error(versionMessage(sql.location, applied, migrations.length));
    sql.db.transaction(() => {
      for (let i = applied; i < migrations.length; i++) sql.db.exec(migrations[i]!);
      sql.db.pragma(`user_version = ${migrations.length}`);
    })();
    return;
  }
  await sql.transaction(async (tx) => {
    await tx.run('CREATE TABLE IF NOT EXISTS expctl_schema (version BIGINT NOT NULL)');
    const row = await tx.get<{ version: number }>('SELECT version FROM expctl_schema');
    const applied = row?.version ?? 0;
    if (applied > migrations.length) throw new Error(versionMessage(sql.location, applied, migrations.length));
    for (let i = applied; i < migrations.length; i++) await tx.run(toPostgres(migrations[i]!));
    if (row) await tx.run('UPDATE expctl_schema SET version = ?', [migrations.length]);
    else await tx.run('INSERT INTO expctl_schema (version) VALUES (?)', [migrations.length]);
  });
}
