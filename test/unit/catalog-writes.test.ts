import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { parseExperimentRequest } from '../../src/domain/request.js';
import { CATALOG_BACKENDS, stopTestPostgres } from '../helpers/catalogs.js';

const request = (tag: string) =>
  parseExperimentRequest({
    tag,
    hypothesis: 'h',
    category: 'hyperparams',
    repo: '/nowhere',
    commit: crypto.createHash('sha1').update(tag).digest('hex'),
  });

afterAll(stopTestPostgres);

for (const backend of CATALOG_BACKENDS) {
  describe.skipIf(backend.skip)(`record writes on ${backend.name}`, () => {
    let location: string;
    let catalog: Catalog;
    beforeAll(async () => {
      location = await backend.fresh();
      catalog = await Catalog.open(location);
    });
    afterAll(() => catalog?.close());

    it('keeps content whole by its sha256, once, and reads it back page by page without cutting a character', async () => {
      // Multi-byte characters (2, 3 and 4 bytes in UTF-8) across page boundaries.
      const content = `diff --git a/train.py b/train.py\n${'+x = "é€😀"\n'.repeat(5000)}`;
      const sha256 = crypto.createHash('sha256').update(content, 'utf8').digest('hex');
      expect(await catalog.hasBlob(sha256)).toBe(false);
      expect(await catalog.blobPage(sha256, 0, 10)).toBeUndefined();
      await expect(catalog.putBlob('0'.repeat(64), content)).rejects.toThrow(
        /content hashes to [0-9a-f]{64}, not the 0{64}/,
      );
      await catalog.putBlob(sha256, content);
      await catalog.putBlob(sha256, content);
      expect(await catalog.hasBlob(sha256)).toBe(true);
      const pages: string[] = [];
      for (let offset: number | null = 0; offset !== null; ) {
        const page: { text: string; bytes: number; nextOffset: number | null } = (await catalog.blobPage(
          sha256,
          offset,
          7777,
        ))!;
        expect(page.bytes).toBe(Buffer.byteLength(content, 'utf8'));
        pages.push(page.text);
        offset = page.nextOffset;
      }
      expect(pages.length).toBeGreaterThan(5);
      expect(pages.join('')).toBe(content);
      expect(Number((await catalog.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM blobs'))!.n)).toBe(1);
    });

    it('a retry that lands after a newer update adds its events and changes no field', async () => {
      const id = 'exp-late-0001';
      const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
      await catalog.apply({
        experimentId: id,
        revision: 1,
        request: request('late'),
        submittedAt: at(0),
        status: 'validating',
        events: [{ status: 'submitted', at: at(0) }],
      });
      await catalog.apply({ experimentId: id, revision: 3, status: 'canceled', reason: 'canceled by olga' });
      // Revision 2 was retried on another orchestrator and finished last.
      await catalog.apply({
        experimentId: id,
        revision: 2,
        status: 'running',
        reason: 'stale',
        events: [{ status: 'running', at: at(2) }],
      });
      await catalog.apply({
        experimentId: id,
        revision: 2,
        status: 'running',
        events: [{ status: 'running', at: at(2) }],
      });
      const record = (await catalog.get(id))!;
      expect(record).toMatchObject({ status: 'canceled', reason: 'canceled by olga' });
      expect(record).not.toHaveProperty('revision');
      expect(record.events.map((e) => e.status)).toEqual(['submitted', 'running']);
      // The first update retried late must not roll the row back either.
      await catalog.apply({ experimentId: id, revision: 1, request: request('late'), status: 'validating' });
      expect((await catalog.get(id))!.status).toBe('canceled');
    });

    it('a write re-executed with new times (its orchestrator died before its task completed) adds nothing', async () => {
      const id = 'exp-again-0001';
      const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
      const first = {
        experimentId: id,
        revision: 1,
        request: request('again'),
        submittedAt: at(0),
        status: 'validating' as const,
        events: [
          { status: 'submitted' as const, at: at(0), seq: 0 },
          { status: 'validating' as const, at: at(1), seq: 1 },
        ],
      };
      await catalog.apply(first);
      // The same update as the next orchestrator runs it: the workflow's time has moved on.
      await catalog.apply({ ...first, events: [first.events[0]!, { status: 'validating', at: at(7), seq: 1 }] });
      await catalog.apply({
        experimentId: id,
        revision: 2,
        status: 'completed',
        events: [{ status: 'completed', at: at(9), note: 'done', seq: 2 }],
      });
      await catalog.apply({
        experimentId: id,
        revision: 2,
        status: 'completed',
        events: [{ status: 'completed', at: at(12), note: 'done', seq: 2 }],
      });
      const record = (await catalog.get(id))!;
      expect(record.events).toEqual([
        { status: 'submitted', at: at(0), note: null },
        { status: 'validating', at: at(1), note: null },
        { status: 'completed', at: at(9), note: 'done' },
      ]);
    });

    it('two writers applying updates of many runs at once lose none and double none', async () => {
      const other = await Catalog.open(location);
      try {
        const ids = Array.from({ length: 20 }, (_, i) => `exp-many-${String(i).padStart(4, '0')}`);
        await Promise.all(
          ids.map(async (id, i) => {
            const writer = i % 2 ? other : catalog;
            await writer.apply({ experimentId: id, revision: 1, request: request('many'), status: 'validating' });
            // Both writers deliver the final update, as an activity retried on a second orchestrator does.
            const final = {
              experimentId: id,
              revision: 2,
              status: 'completed' as const,
              events: [{ status: 'completed' as const, at: '2026-01-01T00:00:00.000Z' }],
            };
            await Promise.all([catalog.apply(final), other.apply(final)]);
          }),
        );
        const rows = await catalog.list({ tag: 'many' });
        expect(rows).toHaveLength(20);
        expect(rows.every((row) => row.status === 'completed')).toBe(true);
        for (const id of ids) expect((await catalog.get(id))!.events).toHaveLength(1);
      } finally {
        await other.close();
      }
    });

    it('an audit line is written once per verification: a re-run replaces it, and its verdict stands', async () => {
      const line = {
        action: 'submit',
        target: 'exp-audit-0001',
        actor: 'ana',
        role: 'submitter',
        credentialId: 'c1',
        detail: null,
      };
      const source = 'exp-audit-0001/run-1/1';
      await catalog.audit({ ...line, source, at: '2026-01-01T00:00:01.000Z', allowed: true });
      // Run again by the next orchestrator, after the credential was revoked: that verdict is the one kept.
      await catalog.audit({ ...line, source, at: '2026-01-01T00:00:09.000Z', allowed: false, detail: 'revoked' });
      // Lines without a source (none written by an activity) are each kept.
      await catalog.audit({ ...line, at: '2026-01-01T00:00:10.000Z', allowed: true });
      await catalog.audit({ ...line, at: '2026-01-01T00:00:10.000Z', allowed: true });
      expect(
        (await catalog.auditTrail('exp-audit-0001')).map((entry) => [entry.at, entry.allowed, entry.detail]),
      ).toEqual([
        ['2026-01-01T00:00:09.000Z', false, 'revoked'],
        ['2026-01-01T00:00:10.000Z', true, null],
        ['2026-01-01T00:00:10.000Z', true, null],
      ]);
    });

    it('refuses an update for a run whose submission was never recorded', async () => {
      await expect(catalog.apply({ experimentId: 'exp-ghost-0001', revision: 2, status: 'running' })).rejects.toThrow(
        /no experiment exp-ghost-0001/,
      );
    });
  });
}
