import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { tagReportHtml } from '../../src/catalog/html.js';
import { resultRuns, summarize, toRunSummary } from '../../src/catalog/reports.js';
import { resultsTsv } from '../../src/catalog/tsv.js';
import { tagCountsLine } from '../../src/cli/commands/tag.js';
import {
  applyOutcome,
  newTagState,
  tagCountsSummary,
  type TagDecision,
  type TagState,
} from '../../src/domain/decision.js';
import { CATEGORIES } from '../../src/domain/request.js';
import { crashed, suggest } from '../../src/domain/strategy.js';
import { CATALOG_BACKENDS, stopTestPostgres } from '../helpers/catalogs.js';
import { recordRun, type RecordedRun } from '../helpers/records.js';

/**
 * One mixed campaign through every surface: the tag's decisions and counts (what `tag show`
 * prints), the catalog summary, the tags() SQL, strategy, results.tsv and the HTML report must
 * agree on the crash count and the keep rate.
 */
const block = (val_bpb: number) => ({ val_bpb, peak_vram_mb: 45312, training_seconds: 300.1 });
const CAMPAIGN: RecordedRun[] = [
  { id: 'keep1', status: 'completed', metrics: block(1.0) },
  { id: 'worse', status: 'completed', metrics: block(1.1) },
  { id: 'tie', status: 'completed', metrics: block(1.0) },
  { id: 'nearmiss', status: 'completed', metrics: block(1.001) },
  { id: 'fail', status: 'command_failed' },
  { id: 'oom', status: 'oom' },
  { id: 'refused1', status: 'validation_failed' },
  { id: 'lost', status: 'worker_lost' },
  { id: 'exhausted', status: 'retry_exhausted' },
  { id: 'canceled', status: 'canceled' },
  { id: 'timeout', status: 'timed_out' },
  { id: 'refused2', status: 'validation_failed' },
  { id: 'keep2', status: 'completed', metrics: block(0.95) },
  { id: 'simpler', status: 'completed', metrics: block(0.95), request: { simplification: true } },
];
// keep1, keep2, simpler kept; worse, tie, nearmiss discarded; fail, oom, timeout crashed: 9 runs
const EXPECTED = {
  kept: 3,
  discarded: 3,
  crashed: 3,
  refused: 2,
  infrastructure: 2,
  canceled: 1,
  runs: 9,
  keepRate: 3 / 9,
  crashRate: 3 / 9,
};

afterAll(stopTestPostgres);

for (const backend of CATALOG_BACKENDS) {
  describe.skipIf(backend.skip)(`one mixed campaign, every surface, from ${backend.name}`, () => {
    let dir: string;
    let catalog: Catalog;
    let state: TagState = newTagState('mixed');
    const decisions: TagDecision[] = [];

    beforeAll(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-campaign-'));
      catalog = await Catalog.open(await backend.fresh());
      for (const run of CAMPAIGN) {
        const metric = typeof run.metrics?.val_bpb === 'number' ? run.metrics.val_bpb : null;
        const next = applyOutcome(state, {
          experimentId: run.id,
          status: run.status,
          metric,
          acceleratorClass: 'h100',
          commit: 'c',
          metrics: run.metrics,
          simplification: run.request?.simplification ?? false,
        });
        state = next.state;
        decisions.push(next.decision);
        await recordRun(catalog, run, next.decision, { name: 'val_bpb', direction: 'minimize' });
      }
    });
    afterAll(async () => {
      await catalog?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it("decides each run by its rule, counting only the experiment's own failures as crashes", async () => {
      expect(decisions.map((d) => [d.experimentId, d.decision, d.rule, d.consecutiveCrashes, d.shouldAbort])).toEqual([
        ['keep1', 'keep', 'first_run', 0, false],
        ['worse', 'discard', 'not_improved', 0, false],
        ['tie', 'discard', 'tie', 0, false],
        ['nearmiss', 'discard', 'not_improved', 0, false],
        ['fail', null, 'command_failed', 1, false],
        ['oom', null, 'oom', 2, false],
        ['refused1', null, 'validation_failed', 2, false],
        ['lost', null, 'worker_lost', 2, false],
        ['exhausted', null, 'retry_exhausted', 2, false],
        ['canceled', null, 'canceled', 2, false],
        ['timeout', 'discard', 'timed_out', 3, true],
        ['refused2', null, 'validation_failed', 3, true],
        ['keep2', 'keep', 'improved', 0, false],
        ['simpler', 'keep', 'tie_simplification', 0, false],
      ]);
      expect(decisions.filter((d) => d.nearMiss).map((d) => d.experimentId)).toEqual(['tie', 'nearmiss']);
      // the record keeps which rule decided
      expect((await catalog.list({ tag: 'mixed', order: 'oldest' })).map((r) => r.rule)).toEqual(
        decisions.map((d) => d.rule),
      );
    });

    it('gives the same crash count and keep rate on every surface', async () => {
      const records = await catalog.list({ tag: 'mixed' });

      // tag show (the tag workflow's counts)
      const shown = tagCountsSummary(state.counts);
      expect(shown).toMatchObject(EXPECTED);
      expect(tagCountsLine('mixed', state.counts, state.consecutiveCrashes)).toBe(
        'tag mixed: 9 runs, 3 kept (33%), 3 discarded, 3 crashed (33%), 2 near misses; not counted: 2 refused, 2 infrastructure failures, 1 canceled; 0 consecutive crashes',
      );

      // report summary
      expect(summarize('mixed', records)).toMatchObject(EXPECTED);

      // report tags (SQL)
      const [row] = await catalog.tags();
      expect(row).toMatchObject({ tag: 'mixed', total: CAMPAIGN.length, best: 0.95, ...EXPECTED });

      // strategy
      const summaries = resultRuns(await catalog.list({ tag: 'mixed', order: 'oldest' })).map(toRunSummary);
      expect(summaries.filter(crashed)).toHaveLength(EXPECTED.crashed);
      const categories = suggest(summaries, CATEGORIES, 'minimize').categories;
      const other = categories.find((c) => c.category === 'other')!;
      expect({ runs: other.runs, kept: other.kept, crashes: other.crashes, keepRate: other.keepRate }).toEqual({
        runs: EXPECTED.runs,
        kept: EXPECTED.kept,
        crashes: EXPECTED.crashed,
        keepRate: EXPECTED.keepRate,
      });

      // results.tsv: one row per counted run; refused, infrastructure and canceled runs are not rows
      const rows = resultsTsv(records)
        .trimEnd()
        .split('\n')
        .slice(1)
        .map((line) => line.split('\t'));
      expect(rows.map((r) => r[4])).toEqual([
        'keep1',
        'worse',
        'tie',
        'nearmiss',
        'fail',
        'oom',
        'timeout',
        'keep2',
        'simpler',
      ]);
      const statuses = rows.map((r) => r[3]);
      expect(statuses.filter((s) => s === 'crash')).toHaveLength(EXPECTED.crashed);
      expect(statuses.filter((s) => s === 'keep').length / rows.length).toBe(EXPECTED.keepRate);
      expect(rows.find((r) => r[4] === 'timeout')).toEqual([
        'timeout'
          .replace(/[^0-9a-f]/g, '')
          .padEnd(40, 'a')
          .slice(0, 7),
        '0.000000',
        '0.0',
        'crash',
        'timeout',
      ]);

      // HTML
      const html = tagReportHtml('mixed', records);
      expect(html).toContain(`id="crashed" data-count="${EXPECTED.crashed}" data-rate="${EXPECTED.crashRate}"`);
      expect(html).toContain(`id="kept" data-count="${EXPECTED.kept}" data-rate="${EXPECTED.keepRate}"`);
      const data = JSON.parse(/<script id="data" type="application\/json">(.*?)<\/script>/s.exec(html)![1]!) as {
        points: { kind: string }[];
      };
      expect(data.points.map((p) => p.kind)).toEqual([
        'keep',
        'discard',
        'discard',
        'discard',
        'crash',
        'crash',
        'crash',
        'keep',
        'keep',
      ]);
    });

    it('reports the best kept metric; of equal ones the later keep (the kept simplification), like the tag state', async () => {
      const summary = summarize('mixed', await catalog.list({ tag: 'mixed' }));
      expect(summary.best).toMatchObject({ id: 'simpler', metric: 0.95 });
      expect(state.best.h100).toMatchObject({ experimentId: 'simpler', metric: 0.95 });
    });

    it('reports the best kept metric overall and per class, not the latest keep, across classes', async () => {
      let classes = newTagState('classes');
      const runs: RecordedRun[] = [
        { id: 'h1', status: 'completed', metrics: block(1.0), acceleratorClass: 'h100', request: { tag: 'classes' } },
        { id: 'h2', status: 'completed', metrics: block(0.9), acceleratorClass: 'h100', request: { tag: 'classes' } },
        { id: 'a1', status: 'completed', metrics: block(1.3), acceleratorClass: 'a100', request: { tag: 'classes' } },
        { id: 'a2', status: 'completed', metrics: block(1.2), acceleratorClass: 'a100', request: { tag: 'classes' } },
      ];
      for (const run of runs) {
        const next = applyOutcome(classes, {
          experimentId: run.id,
          status: run.status,
          metric: run.metrics!.val_bpb as number,
          acceleratorClass: run.acceleratorClass!,
          commit: 'c',
        });
        classes = next.state;
        expect(next.decision.decision).toBe('keep'); // each class is compared only with itself
        await recordRun(catalog, run, next.decision, { name: 'val_bpb', direction: 'minimize' });
      }
      const summary = summarize('classes', await catalog.list({ tag: 'classes' }));
      expect(summary.best).toMatchObject({ id: 'h2', metric: 0.9 }); // the latest keep is a2 at 1.2
      expect(summary.bestByClass).toMatchObject({ h100: { id: 'h2', metric: 0.9 }, a100: { id: 'a2', metric: 1.2 } });
      expect((await catalog.tags()).find((t) => t.tag === 'classes')!.best).toBe(0.9);
    });
  });
}
