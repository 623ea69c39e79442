import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { ModelCatalog } from '../../src/catalog/models.js';
import { PROMOTION_CODES } from '../../src/domain/promotion.js';

let dir: string;
let catalog: Catalog;
let models: ModelCatalog;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-models-'));
  catalog = new Catalog(path.join(dir, 'catalog.sqlite'));
  models = new ModelCatalog(catalog.db);
});
afterEach(() => {
  catalog.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

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
const promote = (experimentId: string, expected: number | null, promotionId = `p-${experimentId}`, alias = 'staging') =>
  models.promote({
    model: 'lm',
    alias,
    expected,
    candidate: candidate(experimentId, `sha-${experimentId}`, promotionId),
    by: 'olga',
    promotionId,
    at: new Date().toISOString(),
  });

describe('ModelCatalog', () => {
  it('numbers versions, moves aliases by compare-and-set, and answers a retried move the same', () => {
    expect(promote('exp-a', null)).toEqual({ moved: true, version: 1, previousVersion: null });
    expect(promote('exp-a', null)).toEqual({ moved: true, version: 1, previousVersion: null });
    expect(promote('exp-b', 1)).toEqual({ moved: true, version: 2, previousVersion: 1 });
    // Evaluated against version 1, but the alias moved to 2 meanwhile.
    expect(promote('exp-c', 1)).toMatchObject({ moved: false, code: PROMOTION_CODES.superseded });
    expect(models.aliases('lm')).toEqual({ staging: 2 });
    expect(models.versions('lm').map((v) => v.version)).toEqual([1, 2]);
  });

  it('the same artifact promoted to another alias keeps its version', () => {
    promote('exp-a', null);
    expect(promote('exp-a', null, 'p-prod', 'production')).toEqual({ moved: true, version: 1, previousVersion: null });
    expect(models.aliases('lm')).toEqual({ staging: 1, production: 1 });
    expect(models.versionsByExperiment('exp-a')).toMatchObject([{ model: 'lm', version: 1 }]);
  });

  it('rolls back along the history, once per request', () => {
    promote('exp-a', null);
    promote('exp-b', 1);
    promote('exp-c', 2);
    const rollback = (requestId: string) =>
      models.rollback({
        model: 'lm',
        alias: 'staging',
        by: 'olga',
        reason: 'r',
        at: new Date().toISOString(),
        requestId,
      });
    expect(rollback('r1')).toEqual({ moved: true, version: 2, previousVersion: 3 });
    expect(rollback('r1')).toEqual({ moved: true, version: 2, previousVersion: 3 });
    expect(rollback('r2')).toEqual({ moved: true, version: 1, previousVersion: 2 });
    expect(rollback('r3')).toMatchObject({ moved: false, code: PROMOTION_CODES.nothingToRollBack });
    expect(models.incumbent('lm', 'staging')?.experimentId).toBe('exp-a');
    expect(models.aliasMoves('lm', 'staging').map((m) => `${m.kind}:${m.version}`)).toEqual([
      'promote:1',
      'promote:2',
      'promote:3',
      'rollback:2',
      'rollback:1',
    ]);
  });

  it('records a promotion row and updates it', () => {
    models.recordPromotion({
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
    models.recordPromotion({ id: 'p1', status: 'promoted', code: PROMOTION_CODES.promoted, decidedBy: 'olga' });
    expect(models.promotion('p1')).toMatchObject({
      status: 'promoted',
      approvalRequired: true,
      decidedBy: 'olga',
      stages: [{ name: 'integrity', status: 'passed' }],
    });
    expect(models.models()).toEqual(['lm']);
  });
});
