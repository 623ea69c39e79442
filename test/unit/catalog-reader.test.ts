import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog, CatalogReader } from '../../src/catalog/catalog.js';
import {
  answerCatalogQuery,
  CATALOG_ANSWER_BYTES,
  CatalogAnswerTooLargeError,
  type CatalogAnswers,
  catalogQuerySchema,
} from '../../src/catalog/queries.js';
import { MIGRATIONS } from '../../src/catalog/schema.js';
import { bumpSchemaVersion, CATALOG_BACKENDS, stopTestPostgres } from '../helpers/catalogs.js';
import { parseExperimentRequest } from '../../src/domain/request.js';

const SMALL = 450;
const LARGE = 40;

async function seed(catalog: Catalog, tag: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const at = new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
    await catalog.apply({
      experimentId: `exp-${tag}-${String(i).padStart(4, '0')}`,
      request: parseExperimentRequest({
        tag,
        hypothesis: `idea ${i}`,
        category: 'hyperparams',
        repo: '/nowhere',
        commit: crypto.createHash('sha1').update(`${tag}${i}`).digest('hex'),
      }),
      // Equal submission times for pairs: paging must still neither repeat nor skip a row.
      submittedAt: new Date(Date.parse(at) - (i % 2) * 1000).toISOString(),
      status: 'validation_failed',
      reason: 'seeded',
      events: [{ status: 'submitted', at }],
    });
  }
}

afterAll(stopTestPostgres);

for (const backend of CATALOG_BACKENDS) {
  describe.skipIf(backend.skip)(`the catalog's read path on ${backend.name}`, () => {
    let location: string;
    let reader: CatalogReader;
    beforeAll(async () => {
      location = await backend.fresh();
      const catalog = await Catalog.open(location);
      await seed(catalog, 'small', SMALL);
      await seed(catalog, 'large', LARGE);
      // 40 rows of about 100 KB (a request caps a description lower; the bound must not rely on that):
      // 4 MB in all, more than one answer may carry.
      await catalog.sql.run('UPDATE experiments SET description = ? WHERE tag = ?', ['d'.repeat(100_000), 'large']);
      await catalog.close();
      reader = await CatalogReader.open(location);
    });
    afterAll(() => reader?.close());

    it('reads what the writer wrote, and cannot write', async () => {
      expect(await reader.get('exp-small-0003')).toMatchObject({ tag: 'small', status: 'validation_failed' });
      await expect(reader.sql.run("UPDATE experiments SET status = 'completed'")).rejects.toThrow(/readonly|read-only/);
      expect('apply' in reader).toBe(false);
    });

    it('refuses a catalog of a newer schema version, saying what to do, and leaves it as it is', async () => {
      const newer = await backend.fresh();
      const writer = await Catalog.open(newer);
      await bumpSchemaVersion(writer, MIGRATIONS.length + 1);
      await writer.close();
      await expect(CatalogReader.open(newer)).rejects.toThrow(/newer than this expctl.*upgrade expctl/);
      await expect(Catalog.open(newer)).rejects.toThrow(/newer than this expctl/);
    });

    it('pages a tag in order without repeating or skipping a row', async () => {
      const ids: string[] = [];
      const offsets: number[] = [];
      let offset: number | null = 0;
      while (offset !== null) {
        offsets.push(offset);
        const page: CatalogAnswers['experiments'] = await answerCatalogQuery(reader, {
          kind: 'experiments',
          filter: { tag: 'small', order: 'oldest' },
          offset,
          limit: 200,
        });
        ids.push(...page.rows.map((row) => row.id));
        offset = page.nextOffset;
      }
      expect(offsets).toEqual([0, 200, 400]);
      expect(new Set(ids).size).toBe(SMALL);
      expect(ids).toEqual((await reader.list({ tag: 'small', order: 'oldest' })).map((row) => row.id));
      // Past the first page without a limit: every remaining row.
      expect(await reader.list({ tag: 'small', order: 'oldest', offset: 400 })).toHaveLength(SMALL - 400);
    });

    it('shrinks a page of large rows to the byte bound, and the next page goes on from there', async () => {
      const first = await answerCatalogQuery(reader, {
        kind: 'experiments',
        filter: { tag: 'large' },
        offset: 0,
        limit: 200,
      });
      expect(first.rows.length).toBeGreaterThan(0);
      expect(first.rows.length).toBeLessThan(LARGE);
      expect(Buffer.byteLength(JSON.stringify(first))).toBeLessThanOrEqual(CATALOG_ANSWER_BYTES + 1000);
      expect(first.nextOffset).toBe(first.rows.length);
      const second = await answerCatalogQuery(reader, {
        kind: 'experiments',
        filter: { tag: 'large' },
        offset: first.nextOffset!,
        limit: 200,
      });
      expect(second.rows[0]!.id).not.toBe(first.rows.at(-1)!.id);
    });

    it('refuses an unpaged answer past the bound rather than truncating it', async () => {
      const writer = await Catalog.open(await backend.fresh());
      try {
        for (let i = 0; i < 20; i++)
          await writer.audit({
            at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
            action: 'submit',
            target: 'exp-noisy',
            actor: 'agent',
            role: 'submitter',
            credentialId: null,
            allowed: false,
            detail: 'x'.repeat(100_000),
          });
        await expect(answerCatalogQuery(writer, { kind: 'audit', target: 'exp-noisy' })).rejects.toThrow(
          CatalogAnswerTooLargeError,
        );
      } finally {
        await writer.close();
      }
    });
  });
}

describe('the SQLite catalog file', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-reader-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a reader never creates a catalog where there is none', async () => {
    const missing = path.join(dir, 'nothing-here.sqlite');
    await expect(CatalogReader.open(missing)).rejects.toThrow();
    expect(fs.existsSync(missing)).toBe(false);
  });

  it('refuses a catalog of an older schema version, saying who migrates it, and leaves it as it is', async () => {
    const old = path.join(dir, 'old.sqlite');
    const db = new Database(old);
    db.exec(MIGRATIONS[0]!);
    db.pragma('user_version = 1');
    db.close();
    await expect(CatalogReader.open(old)).rejects.toThrow(/schema version 1, older than this expctl.*only it migrates/);
    const after = new Database(old, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(1);
    after.close();
  });
});

describe('answerCatalogQuery: the boundary', () => {
  it('rejects a malformed question at the boundary', () => {
    expect(catalogQuerySchema.safeParse({ kind: 'experiments', filter: {}, offset: 0, limit: 5000 }).success).toBe(
      false,
    );
    expect(
      catalogQuerySchema.safeParse({ kind: 'experiments', filter: { sql: '1=1' }, offset: 0, limit: 5 }).success,
    ).toBe(false);
    expect(catalogQuerySchema.safeParse({ kind: 'drop' }).success).toBe(false);
  });
});

describe('the CLI has no path that writes the catalog', () => {
  it('no module of the CLI or the client opens the writer, applies a record or migrates', () => {
    const root = fileURLToPath(new URL('../../src', import.meta.url));
    const files = ['cli', 'client'].flatMap((folder) =>
      fs
        .readdirSync(path.join(root, folder), { recursive: true, encoding: 'utf8' })
        .filter((name) => name.endsWith('.ts'))
        .map((name) => path.join(root, folder, name)),
    );
    expect(files.length).toBeGreaterThan(20);
    const offenders = files.filter((file) =>
      /new Catalog\(|\bCatalog\.open\(|\bimport \{[^}]*\bCatalog\b[^}]*\} from '[./]*catalog\/catalog\.js'|\.migrate\(|\.apply\(\{|\.setStrategy\(|\.refreshStrategy\(/.test(
        fs.readFileSync(file, 'utf8'),
      ),
    );
    expect(offenders).toEqual([]);
  });
});
