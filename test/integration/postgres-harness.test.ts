/**
 * The PostgreSQL test server (test/helpers/postgres.ts) that the catalog's PostgreSQL tests use:
 * it starts, serves separate databases, and leaves nothing listening once stopped.
 */
import net from 'node:net';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { postgresUnavailable, startPostgres } from '../helpers/postgres.js';

const unavailable = postgresUnavailable();
if (unavailable) console.warn(`expctl tests: the PostgreSQL harness test is SKIPPED: ${unavailable}`);
const skipped = unavailable ? ` [SKIPPED: ${unavailable}]` : '';

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

describe('the test PostgreSQL server', () => {
  it.skipIf(unavailable !== null)(`serves fresh databases, and stops listening when stopped${skipped}`, async () => {
    const server = await startPostgres();
    if ('skipped' in server) throw new Error(server.skipped);
    const port = Number(new URL(server.adminUrl).port);
    try {
      const urls = [await server.createDatabase(), await server.createDatabase()];
      expect(new Set(urls).size).toBe(2);
      for (const url of [server.url, ...urls]) {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        try {
          const { rows } = await client.query<{ one: number; db: string }>('SELECT 1 AS one, current_database() AS db');
          expect(rows).toEqual([{ one: 1, db: decodeURIComponent(new URL(url).pathname.slice(1)) }]);
        } finally {
          await client.end();
        }
      }
      expect(await accepts(port)).toBe(true);
    } finally {
      await server.stop();
    }
    expect(await accepts(port)).toBe(false);
  });
});
