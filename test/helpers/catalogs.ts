/**
 * The catalog's backends for one suite run against both: SQLite always, PostgreSQL where this
 * machine can start a server (one per test file, started on first use).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Catalog } from '../../src/catalog/catalog.js';
import { SqliteDatabase } from '../../src/catalog/sql.js';
import { postgresUnavailable, startPostgres, type TestPostgres } from './postgres.js';

export interface CatalogBackend {
  name: 'SQLite' | 'PostgreSQL';
  /** Why its tests are skipped here (with the command that provides it), or false. */
  skip: string | false;
  /** Where a new, empty catalog of this kind can be made. */
  fresh(): Promise<string>;
}

let server: Promise<TestPostgres> | undefined;

async function testPostgres(): Promise<TestPostgres> {
  server ??= startPostgres().then((started) => {
    if ('skipped' in started) throw new Error(started.skipped);
    return started;
  });
  return server;
}

/** Stops this file's PostgreSQL server, if it started one (an afterAll of the file). */
export async function stopTestPostgres(): Promise<void> {
  const started = server;
  server = undefined;
  if (started) await (await started.catch(() => undefined))?.stop();
}

const POSTGRES_SKIP = postgresUnavailable();
if (POSTGRES_SKIP) console.warn(`PostgreSQL catalog tests skipped: ${POSTGRES_SKIP}`);

export const CATALOG_BACKENDS: CatalogBackend[] = [
  {
    name: 'SQLite',
    skip: false,
    fresh: async () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-catalog-')), 'catalog.sqlite'),
  },
  {
    name: 'PostgreSQL',
    skip: POSTGRES_SKIP ?? false,
    fresh: async () => (await testPostgres()).createDatabase(),
  },
];

/** A fresh PostgreSQL database for a test that needs one, or why there is none here. */
export async function postgresCatalogUrl(): Promise<string> {
  return (await testPostgres()).createDatabase();
}

/** Marks a catalog as written by another expctl version (the migrations applied, as it says). */
export async function bumpSchemaVersion(catalog: Catalog, version: number): Promise<void> {
  if (catalog.sql instanceof SqliteDatabase) catalog.sql.db.pragma(`user_version = ${version}`);
  else await catalog.sql.run('UPDATE expctl_schema SET version = ?', [version]);
}
