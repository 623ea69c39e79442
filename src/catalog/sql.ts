/**
 * The catalog's one way to the database: an async interface with two drivers, SQLite (embedded,
 * the default) and PostgreSQL (clusters, several orchestrators). Catalog code writes one SQL for
 * both, with `?` placeholders; the few differences live in `Dialect`.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import Database from 'better-sqlite3';
import type pg from 'pg';

/** The PostgreSQL driver, loaded on first use: an embedded catalog (and every CLI start) never loads it. */
let pgModule: typeof pg | undefined;
const pgDriver = (): typeof pg => (pgModule ??= createRequire(import.meta.url)('pg') as typeof pg);

export type Row = Record<string, unknown>;
export type SqlValue = string | number | bigint | null;

export interface Dialect {
  readonly name: 'sqlite' | 'postgres';
  /** `LIMIT` with no bound, for an `OFFSET` without a limit. */
  readonly noLimit: string;
  /** The aggregate that joins strings with commas. */
  groupConcat(expression: string): string;
}

export const SQLITE: Dialect = {
  name: 'sqlite',
  noLimit: 'LIMIT -1',
  groupConcat: (expression) => `GROUP_CONCAT(${expression})`,
};

export const POSTGRES: Dialect = {
  name: 'postgres',
  noLimit: 'LIMIT ALL',
  groupConcat: (expression) => `STRING_AGG(${expression}, ',')`,
};

/** Statements inside or outside a transaction. */
export interface SqlRunner {
  readonly dialect: Dialect;
  all<T = Row>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  get<T = Row>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined>;
  /** `changes`: rows inserted, updated or deleted. */
  run(sql: string, params?: readonly SqlValue[]): Promise<{ changes: number }>;
}

export interface SqlDatabase extends SqlRunner {
  /** Where it is, for messages (a file, or a URL without its password). */
  readonly location: string;
  /**
   * Runs `work` as one transaction, serialized with every other write transaction on this
   * database, from this process or another (SQLite's write lock; an advisory lock on PostgreSQL).
   */
  transaction<T>(work: (tx: SqlRunner) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** A queue of one: work waits for the work before it to finish. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async lock<T>(work: () => Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    await previous;
    try {
      return await work();
    } finally {
      release();
    }
  }
}

function sqliteRunner(db: Database.Database): SqlRunner {
  return {
    dialect: SQLITE,
    all: async <T>(sql: string, params: readonly SqlValue[] = []) => db.prepare(sql).all(...params) as T[],
    get: async <T>(sql: string, params: readonly SqlValue[] = []) => db.prepare(sql).get(...params) as T | undefined,
    run: async (sql, params = []) => ({ changes: db.prepare(sql).run(...params).changes }),
  };
}

/**
 * One queue per file in this process. A transaction spans awaits, and better-sqlite3 blocks the
 * thread while it waits for a lock: a second connection to the same file in this process (a test's
 * writer beside the orchestrator's) must wait its turn here, not in SQLite, or neither proceeds.
 * Other processes wait in SQLite (busy_timeout), which does not block this thread's holder.
 */
const fileQueues = new Map<string, Mutex>();

export class SqliteDatabase implements SqlDatabase {
  readonly dialect = SQLITE;
  private readonly mutex: Mutex;
  private readonly runner: SqlRunner;

  constructor(
    /** The connection itself, for what only SQLite has (pragmas). */
    readonly db: Database.Database,
    readonly location: string,
  ) {
    this.runner = sqliteRunner(db);
    const key = path.resolve(location);
    this.mutex = fileQueues.get(key) ?? new Mutex();
    fileQueues.set(key, this.mutex);
  }

  all<T = Row>(sql: string, params?: readonly SqlValue[]): Promise<T[]> {
    return this.mutex.lock(() => this.runner.all<T>(sql, params));
  }
  get<T = Row>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined> {
    return this.mutex.lock(() => this.runner.get<T>(sql, params));
  }
  run(sql: string, params?: readonly SqlValue[]): Promise<{ changes: number }> {
    return this.mutex.lock(() => this.runner.run(sql, params));
  }

  transaction<T>(work: (tx: SqlRunner) => Promise<T>): Promise<T> {
    return this.mutex.lock(async () => {
      // IMMEDIATE: take the write lock now, so two processes never both read then both write.
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = await work(this.runner);
        this.db.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw error;
      }
    });
  }

  async close(): Promise<void> {
    await this.mutex.lock(async () => this.db.close());
  }
}

/** `?` placeholders to PostgreSQL's `$1, $2, …` (outside quoted strings and identifiers). */
export function numberPlaceholders(sql: string): string {
  let out = '';
  let n = 0;
  let quote: string | null = null;
  for (const ch of sql) {
    if (quote) {
      if (ch === quote) quote = null;
      out += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      out += ch;
    } else if (ch === '?') {
      out += `$${++n}`;
    } else {
      out += ch;
    }
  }
  return out;
}

// Counts and byte sizes come back as numbers, as from SQLite (they stay far below 2^53).
const INT8_OID = 20;
const NUMERIC_OID = 1700;
const pgTypes = {
  getTypeParser: ((oid: number, format?: string) => {
    if (oid === INT8_OID || oid === NUMERIC_OID) return (value: string) => Number(value);
    return pgDriver().types.getTypeParser(oid, format as 'text');
  }) as typeof pg.types.getTypeParser,
};

/** Any key: every write transaction of every orchestrator on this database takes it. */
const WRITE_LOCK_KEY = 0x657870_63746c; // "expctl"

function pgRunner(query: (sql: string, params: readonly SqlValue[]) => Promise<pg.QueryResult>): SqlRunner {
  return {
    dialect: POSTGRES,
    all: async <T>(sql: string, params: readonly SqlValue[] = []) => (await query(sql, params)).rows as T[],
    get: async <T>(sql: string, params: readonly SqlValue[] = []) =>
      (await query(sql, params)).rows[0] as T | undefined,
    run: async (sql, params = []) => ({ changes: (await query(sql, params)).rowCount ?? 0 }),
  };
}

/** The URL without its password, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'postgres://…';
  }
}

export class PostgresDatabase implements SqlDatabase {
  readonly dialect = POSTGRES;
  readonly location: string;
  private readonly runner: SqlRunner;

  constructor(
    private readonly pool: pg.Pool,
    url: string,
  ) {
    this.location = redactUrl(url);
    this.runner = pgRunner((sql, params) => pool.query(numberPlaceholders(sql), params as unknown[]));
  }

  static open(url: string, options: { max?: number; readOnly?: boolean } = {}): PostgresDatabase {
    const pool = new (pgDriver().Pool)({
      connectionString: url,
      max: options.max ?? 4,
      types: pgTypes,
      // A command that is done exits without closing the pool first.
      allowExitOnIdle: true,
      // A reader's sessions refuse every write, as SQLite's read-only connection does.
      ...(options.readOnly ? { options: '-c default_transaction_read_only=on' } : {}),
    });
    // An idle client whose server went away must not crash the process: the next query reconnects.
    pool.on('error', () => {});
    return new PostgresDatabase(pool, url);
  }

  all<T = Row>(sql: string, params?: readonly SqlValue[]): Promise<T[]> {
    return this.runner.all<T>(sql, params);
  }
  get<T = Row>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined> {
    return this.runner.get<T>(sql, params);
  }
  run(sql: string, params?: readonly SqlValue[]): Promise<{ changes: number }> {
    return this.runner.run(sql, params);
  }

  async transaction<T>(work: (tx: SqlRunner) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [WRITE_LOCK_KEY]);
      const result = await work(pgRunner((sql, params) => client.query(numberPlaceholders(sql), params as unknown[])));
      await client.query('COMMIT');
      return result;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Whether a catalog location names a PostgreSQL server rather than a SQLite file. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//.test(location);
}
