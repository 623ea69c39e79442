import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import type { ModelCatalog } from '../../src/catalog/models.js';
import { PROMOTION_CODES } from '../../src/domain/promotion.js';
import { CATALOG_BACKENDS, stopTestPostgres } from '../helpers/catalogs.js';

afterAll(stopTestPostgres);

for (const backend of CATALOG_BACKENDS) {
  describe.skipIf(backend.skip)(`ModelCatalog on ${backend.name}`, () => {
    let location: string;
    let catalog: Catalog;
    let models: ModelCatalog;
    beforeEach(async () => {
      location = await backend.fresh();
      catalog = await Catalog.open(location);
      models = catalog.models;
    });
    afterEach(() => catalog.close());

    const candidate = (experimentId: string, sha = `sha-${experimentId}`, promotionId = `p-${experimentId}`) => ({
      experimentId,
      artifactPath: 'model.pt',
      artifactSha256: sha,
      promotionId,
      holdoutExperimentId: `h-${experimentId}`,
      holdoutMetric: 1,
      metricName: 'val_bpb',
      direction: 'minimize' as const,
    });
    const promote = (
      experimentId: string,
      expected: number | null,
      promotionId = `p-${experimentId}`,
      alias = 'staging',
    ) =>
      models.promote({
        model: 'lm',
        alias,
        expected,
        candidate: candidate(experimentId, `sha-${experimentId}`, promotionId),
        by: 'olga',
        promotionId,
        at: new Date().toISOString(),
      });

    it('numbers versions, moves aliases by compare-and-set, and answers a retried move the same', async () => {
      expect(await promote('exp-a', null)).toEqual({ moved: true, version: 1, previousVersion: null });
      expect(await promote('exp-a', null)).toEqual({ moved: true, version: 1, previousVersion: null });
      expect(await promote('exp-b', 1)).toEqual({ moved: true, version: 2, previousVersion: 1 });
      // Evaluated against version 1, but the alias moved to 2 meanwhile.
      expect(await promote('exp-c', 1)).toMatchObject({ moved: false, code: PROMOTION_CODES.superseded });
      expect(await models.aliases('lm')).toEqual({ staging: 2 });
      expect((await models.versions('lm')).map((v) => v.version)).toEqual([1, 2]);
    });

    it('the same artifact promoted to another alias keeps its version', async () => {
      await promote('exp-a', null);
      expect(await promote('exp-a', null, 'p-prod', 'production')).toEqual({
        moved: true,
        version: 1,
        previousVersion: null,
      });
      expect(await models.aliases('lm')).toEqual({ staging: 1, production: 1 });
      expect(await models.versionsByExperiment('exp-a')).toMatchObject([{ model: 'lm', version: 1 }]);
    });

    it('rolls back along the history, once per request', async () => {
      await promote('exp-a', null);
      await promote('exp-b', 1);
      await promote('exp-c', 2);
      const rollback = (requestId: string) =>
        models.rollback({
          model: 'lm',
          alias: 'staging',
          by: 'olga',
          reason: 'r',
          at: new Date().toISOString(),
          requestId,
        });
      expect(await rollback('r1')).toEqual({ moved: true, version: 2, previousVersion: 3 });
      expect(await rollback('r1')).toEqual({ moved: true, version: 2, previousVersion: 3 });
      expect(await rollback('r2')).toEqual({ moved: true, version: 1, previousVersion: 2 });
      expect(await rollback('r3')).toMatchObject({ moved: false, code: PROMOTION_CODES.nothingToRollBack });
      expect((await models.incumbent('lm', 'staging'))?.experimentId).toBe('exp-a');
      expect((await models.aliasMoves('lm', 'staging')).map((m) => `${m.kind}:${m.version}`)).toEqual([
        'promote:1',
        'promote:2',
        'promote:3',
        'rollback:2',
        'rollback:1',
      ]);
    });

    it('records a promotion row and updates it', async () => {
      await models.recordPromotion({
        id: 'p1',
        model: 'lm',
        alias: 'staging',
        experimentId: 'exp-a',
        status: 'running',
        threshold: 0.01,
        requestedBy: 'olga',
        startedAt: '2026-01-01T00:00:00Z',
        approvalRequired: true,
        stages: [{ name: 'integrity', status: 'passed', at: '2026-01-01T00:00:01Z' }],
      });
      await models.recordPromotion({ id: 'p1', status: 'promoted', code: PROMOTION_CODES.promoted, decidedBy: 'olga' });
      expect(await models.promotion('p1')).toMatchObject({
        status: 'promoted',
        approvalRequired: true,
        decidedBy: 'olga',
        stages: [{ name: 'integrity', status: 'passed' }],
      });
      expect(await models.models()).toEqual(['lm']);
    });

    it('two orchestrators moving one alias at once: exactly one moves, the other is superseded', async () => {
      await promote('exp-a', null);
      // A second writer on the same catalog, as a second orchestrator has.
      const other = await Catalog.open(location);
      const move = (on: ModelCatalog, experimentId: string) =>
        on.promote({
          model: 'lm',
          alias: 'staging',
          expected: 1,
          candidate: candidate(experimentId),
          by: 'olga',
          promotionId: `p-${experimentId}`,
          at: new Date().toISOString(),
        });
      try {
        const results = await Promise.all([move(models, 'exp-x'), move(other.models, 'exp-y')]);
        expect(results.filter((r) => r.moved)).toHaveLength(1);
        expect(results.filter((r) => !r.moved)).toMatchObject([{ code: PROMOTION_CODES.superseded }]);
        expect(await models.versions('lm')).toHaveLength(2);
      } finally {
        await other.close();
      }
    });
  });
}
