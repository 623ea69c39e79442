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
import { parseExperimentRequest } from '../../src/domain/request.js';

let dir: string;
let file: string;
const SMALL = 450;
const LARGE = 40;

function seed(catalog: Catalog, tag: string, count: number): void {
  for (let i = 0; i < count; i++) {
    const at = new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString();
    catalog.apply({
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

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-reader-'));
  file = path.join(dir, 'catalog.sqlite');
  const catalog = new Catalog(file);
  seed(catalog, 'small', SMALL);
  seed(catalog, 'large', LARGE);
  // 40 rows of about 100 KB (a request caps a description lower; the bound must not rely on that):
  // 4 MB in all, more than one answer may carry.
  catalog.db.prepare('UPDATE experiments SET description = ? WHERE tag = ?').run('d'.repeat(100_000), 'large');
  catalog.close();
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('CatalogReader: the read path', () => {
  it('reads what the writer wrote, and cannot write', () => {
    const reader = CatalogReader.open(file);
    try {
      expect(reader.get('exp-small-0003')).toMatchObject({ tag: 'small', status: 'validation_failed' });
      expect(() => reader.db.prepare("UPDATE experiments SET status = 'completed'").run()).toThrow(/readonly/);
      expect('apply' in reader).toBe(false);
    } finally {
      reader.close();
    }
  });

  it('never creates a catalog where there is none', () => {
    const missing = path.join(dir, 'nothing-here.sqlite');
    expect(() => CatalogReader.open(missing)).toThrow();
    expect(fs.existsSync(missing)).toBe(false);
  });

  it('refuses a catalog of another schema version, saying who migrates it, and leaves it as it is', () => {
    const old = path.join(dir, 'old.sqlite');
    const db = new Database(old);
    db.exec(MIGRATIONS[0]!);
    db.pragma('user_version = 1');
    db.close();
    expect(() => CatalogReader.open(old)).toThrow(/schema version 1, older than this expctl.*only it migrates/);
    const after = new Database(old, { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(1);
    after.close();
  });
});

describe('answerCatalogQuery: bounded, paged answers', () => {
  it('pages a tag in order without repeating or skipping a row', () => {
    const reader = CatalogReader.open(file);
    try {
      const ids: string[] = [];
      const offsets: number[] = [];
      let offset: number | null = 0;
      while (offset !== null) {
        offsets.push(offset);
        const page: CatalogAnswers['experiments'] = answerCatalogQuery(reader, {
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
      expect(ids).toEqual(reader.list({ tag: 'small', order: 'oldest' }).map((row) => row.id));
    } finally {
      reader.close();
    }
  });

  it('shrinks a page of large rows to the byte bound, and the next page goes on from there', () => {
    const reader = CatalogReader.open(file);
    try {
      const first = answerCatalogQuery(reader, {
        kind: 'experiments',
        filter: { tag: 'large' },
        offset: 0,
        limit: 200,
      });
      expect(first.rows.length).toBeGreaterThan(0);
      expect(first.rows.length).toBeLessThan(LARGE);
      expect(Buffer.byteLength(JSON.stringify(first))).toBeLessThanOrEqual(CATALOG_ANSWER_BYTES + 1000);
      expect(first.nextOffset).toBe(first.rows.length);
      const second = answerCatalogQuery(reader, {
        kind: 'experiments',
        filter: { tag: 'large' },
        offset: first.nextOffset!,
        limit: 200,
      });
      expect(second.rows[0]!.id).not.toBe(first.rows.at(-1)!.id);
    } finally {
      reader.close();
    }
  });

  it('refuses an unpaged answer past the bound rather than truncating it', () => {
    const writer = new Catalog(path.join(dir, 'audit.sqlite'));
    try {
      for (let i = 0; i < 20; i++)
        writer.audit({
          at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
          action: 'submit',
          target: 'exp-noisy',
          actor: 'agent',
          role: 'submitter',
          credentialId: null,
          allowed: false,
          detail: 'x'.repeat(100_000),
        });
      expect(() => answerCatalogQuery(writer, { kind: 'audit', target: 'exp-noisy' })).toThrow(
        CatalogAnswerTooLargeError,
      );
    } finally {
      writer.close();
    }
  });

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
      /new Catalog\(|\bimport \{[^}]*\bCatalog\b[^}]*\} from '[./]*catalog\/catalog\.js'|\.migrate\(|\.apply\(\{|\.setStrategy\(|\.refreshStrategy\(/.test(
        fs.readFileSync(file, 'utf8'),
      ),
    );
    expect(offenders).toEqual([]);
  });
});
