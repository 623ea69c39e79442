import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import type { ShardEntry } from '../../src/domain/datasets.js';
import type { GateHistory } from '../../src/domain/gates.js';
import { CATALOG_BACKENDS, stopTestPostgres } from '../helpers/catalogs.js';

const shard = (index: number, sha256: string): ShardEntry => ({
  index,
  count: 2,
  sha256,
  declaredSha256: sha256,
  declaredRecords: 10,
  bytes: 5_000_000_000, // past 2^32: byte counts are 64-bit on both backends
  format: 'jsonl',
  records: 10,
  schema: { text: 'string' },
  fileName: `d-${index}.jsonl`,
  arrivedAt: `2026-01-01T00:00:0${index}.000Z`,
});
const history: GateHistory = { versions: 0, passed: 0, passRate: null };

afterAll(stopTestPostgres);

for (const backend of CATALOG_BACKENDS) {
  describe.skipIf(backend.skip)(`dataset records on ${backend.name}`, () => {
    let catalog: Catalog;
    beforeAll(async () => {
      catalog = await Catalog.open(await backend.fresh());
    });
    afterAll(() => catalog?.close());

    it('keeps a version, its shards once each, its seal, gates and decision; retried writes change nothing', async () => {
      const records = catalog.datasets;
      const opened = { dataset: 'd', version: 1, workflowId: 'w', expectedShards: 2, openedAt: '2026-01-01T00:00:00Z' };
      await records.openVersion(opened);
      await records.openVersion(opened);
      await records.addShard('d', 1, shard(1, 'b'));
      await records.addShard('d', 1, shard(0, 'a'));
      await records.addShard('d', 1, shard(0, 'a'));
      await records.countDelivery('d', 1, 0);
      expect((await records.shards('d', 1)).map((s) => [s.index, s.deliveries, s.bytes])).toEqual([
        [0, 2, 5_000_000_000],
        [1, 1, 5_000_000_000],
      ]);
      await records.sealVersion('d', 1, 'complete', '2026-01-01T00:01:00Z');
      for (const gate of ['integrity', 'completeness'] as const) {
        await records.recordGate('d', 1, { gate, passed: true, code: null, message: 'ok' }, history, '2026-01-01');
        // A retried gate activity: the same row, updated.
        await records.recordGate('d', 1, { gate, passed: true, code: null, message: 'ok' }, history, '2026-01-01');
      }
      expect(await records.decideVersion('d', 1, '2026-01-01T00:02:00Z')).toBe('passed');
      expect(await records.latestPassed('d')).toMatchObject({
        version: 1,
        records: 20,
        shards: [{ index: 0 }, { index: 1 }],
      });
      expect((await records.versions('d'))[0]).toMatchObject({ arrivedShards: 2, sealReason: 'complete' });
      expect((await records.gateInput('d', 2).catch((error: Error) => error.message)) as string).toMatch(/no version/);
    });

    it('counts gate results per day with their failure codes', async () => {
      const records = catalog.datasets;
      const fail = (code: string) => ({ gate: 'schema' as const, passed: false, code, message: 'no' });
      await records.openVersion({ dataset: 's', version: 1, workflowId: 'w', expectedShards: 1, openedAt: 'x' });
      await records.openVersion({ dataset: 's', version: 2, workflowId: 'w', expectedShards: 1, openedAt: 'x' });
      await records.recordGate('s', 1, fail('schema.type_changed'), history, '2026-02-01T10:00:00Z');
      await records.recordGate('s', 2, fail('schema.column_removed'), history, '2026-02-01T11:00:00Z');
      await records.recordGate(
        's',
        2,
        { gate: 'records', passed: true, code: null, message: 'ok' },
        history,
        '2026-02-02T00:00:00Z',
      );
      const stats = await records.gateStats({ dataset: 's' });
      expect(stats).toEqual([
        {
          day: '2026-02-01',
          gate: 'schema',
          checked: 2,
          passed: 0,
          passRate: 0,
          failures: { 'schema.type_changed': 1, 'schema.column_removed': 1 },
        },
        { day: '2026-02-02', gate: 'records', checked: 1, passed: 1, passRate: 1, failures: {} },
      ]);
      expect(await records.earlierGateResults('s', 'schema', 2)).toEqual([{ passed: false }]);
    });

    it('keeps late shards in arrival order and raises each alert once', async () => {
      const records = catalog.datasets;
      for (const [i, at] of ['2026-03-01T00:00:02Z', '2026-03-01T00:00:01Z'].entries())
        await records.recordLate({
          dataset: 'l',
          version: 1,
          shardIndex: i,
          shardCount: 2,
          sha256: `s${i}`,
          fileName: `l-${i}.jsonl`,
          arrivedAt: at,
          action: 'next',
          movedToVersion: 2,
        });
      expect((await records.lateShards('l', 2)).map((late) => late.shardIndex)).toEqual([1, 0]);
      const alert = { kind: 'late_shard', subject: 'l@1', code: 'late.after_seal', message: 'late' };
      const first = await records.insertAlert(alert);
      const again = await records.insertAlert(alert);
      expect(first).toMatchObject({ fresh: true, commandExit: null });
      expect(again).toEqual({ id: first.id, fresh: false, commandExit: null });
      await records.setAlertCommandResult(first.id, 0, null);
      expect(await records.alerts({ subjectPrefix: 'l@' })).toMatchObject([
        { id: first.id, kind: 'late_shard', commandExit: 0, details: null },
      ]);
    });
  });
}
