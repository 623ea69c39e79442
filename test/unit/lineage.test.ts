import { describe, expect, it } from 'vitest';
import {
  lineage,
  parseLineageRef,
  renderLineage,
  type LineageNode,
  type LineageSource,
} from '../../src/domain/lineage.js';

/** A small campaign: ngram@1 and @2; e1 read @1 (as @latest), e2 read @2 and was promoted; e3 reran e1. */
const runs: Record<string, { dataset: [string, number, string][]; origin?: { kind: string; of: string } }> = {
  e1: { dataset: [['ngram', 1, 'ngram@latest']] },
  e2: { dataset: [['ngram', 2, 'ngram@latest']] },
  e3: { dataset: [['ngram', 1, 'ngram@1']], origin: { kind: 'rerun', of: 'exp-t-e1' } },
  h1: { dataset: [['ngram', 2, 'ngram@2']], origin: { kind: 'promotion', of: 'promo-1' } },
};
const id = (short: string) => `exp-t-${short}`;
const short = (full: string) => full.replace(/^exp-t-/, '');

const source: LineageSource = {
  datasetVersion: (dataset, version) =>
    dataset === 'ngram' && version <= 2 ? { status: 'passed', records: 250 } : null,
  experiment: (full) => {
    const run = runs[short(full)];
    if (!run) return null;
    return {
      tag: 't',
      status: 'completed',
      decision: 'keep',
      commit: 'abcdef1234',
      metricName: 'val_bpb',
      metric: 2.14,
      origin: run.origin ?? null,
    };
  },
  datasetsOf: (full) =>
    (runs[short(full)]?.dataset ?? []).map(([dataset, version, ref]) => ({ dataset, version, ref })),
  experimentsUsing: (dataset, version) =>
    Object.entries(runs)
      .filter(([, run]) => run.dataset.some(([d, v]) => d === dataset && v === version))
      .map(([key]) => id(key)),
  artifactsOf: (full) => (short(full) === 'e2' ? [{ path: 'model.json', sha256: 'f'.repeat(64) }] : []),
  derivedFrom: (full) =>
    Object.entries(runs)
      .filter(([, run]) => run.origin?.of === full)
      .map(([key, run]) => ({ id: id(key), kind: run.origin!.kind })),
  modelVersionsFrom: (full) =>
    short(full) === 'e2' ? [{ model: 'ngram-lm', version: 1, artifactPath: 'model.json' }] : [],
  modelVersion: (model, version) =>
    model === 'ngram-lm' && version === 1
      ? { experimentId: id('e2'), artifactPath: 'model.json', holdoutExperimentId: id('h1') }
      : null,
  aliasesOf: (model, version) => (model === 'ngram-lm' && version === 1 ? ['production'] : []),
};

const refsOf = (node: LineageNode): string[] => [
  `${node.relation ?? 'root'} ${JSON.stringify(node.ref)}`,
  ...node.children.flatMap(refsOf),
];

describe('lineage references', () => {
  it('reads the four kinds and nothing else', () => {
    expect(parseLineageRef('ngram@2')).toEqual({ kind: 'dataset_version', dataset: 'ngram', version: 2 });
    expect(parseLineageRef('model:ngram-lm@1')).toEqual({ kind: 'model_version', model: 'ngram-lm', version: 1 });
    expect(parseLineageRef('exp-t-e2:model.json')).toEqual({
      kind: 'artifact',
      experimentId: 'exp-t-e2',
      path: 'model.json',
    });
    expect(parseLineageRef('exp-t-e2')).toEqual({ kind: 'experiment', id: 'exp-t-e2' });
    for (const bad of ['ngram', 'ngram@latest', 'model:x', 'x:y', '']) expect(parseLineageRef(bad), bad).toBeNull();
  });
});

describe('lineage', () => {
  it('downstream of a dataset version: experiments, their artifacts, models and aliases, reruns', async () => {
    const tree = await lineage(source, { kind: 'dataset_version', dataset: 'ngram', version: 2 }, 'downstream');
    expect(refsOf(tree)).toEqual([
      'root {"kind":"dataset_version","dataset":"ngram","version":2}',
      'read by {"kind":"experiment","id":"exp-t-e2"}',
      'wrote {"kind":"artifact","experimentId":"exp-t-e2","path":"model.json"}',
      'promoted as {"kind":"model_version","model":"ngram-lm","version":1}',
      'read by {"kind":"experiment","id":"exp-t-h1"}',
    ]);
    expect(renderLineage(tree).join('\n')).toContain('promoted as: model:ngram-lm@1  (holds production)');
    const first = await lineage(source, { kind: 'dataset_version', dataset: 'ngram', version: 1 }, 'downstream');
    expect(refsOf(first)).toContain('rerun of it {"kind":"experiment","id":"exp-t-e3"}');
  });

  it('upstream of a model version: artifact, the run that wrote it, the data it read', async () => {
    const tree = await lineage(source, { kind: 'model_version', model: 'ngram-lm', version: 1 }, 'upstream');
    expect(refsOf(tree)).toEqual([
      'root {"kind":"model_version","model":"ngram-lm","version":1}',
      'made from {"kind":"artifact","experimentId":"exp-t-e2","path":"model.json"}',
      'written by {"kind":"experiment","id":"exp-t-e2"}',
      'read (ngram@latest, pinned) {"kind":"dataset_version","dataset":"ngram","version":2}',
      'evaluated by {"kind":"experiment","id":"exp-t-h1"}',
      'read {"kind":"dataset_version","dataset":"ngram","version":2}',
    ]);
    // Seen twice: the second is marked, not walked again.
    expect(tree.children[1]!.children[0]!.detail).toMatch(/shown above/);
  });

  it('shows what the catalog does not know, marked as such', async () => {
    const tree = await lineage(source, { kind: 'experiment', id: 'exp-t-nope' }, 'upstream');
    expect(tree.known).toBe(false);
    expect(renderLineage(tree)).toEqual(['exp-t-nope  (not in the catalog)']);
  });
});
