import { describe, expect, it } from 'vitest';
import { parseRunFlags } from '../../src/cli/parse.js';
import {
  DEFAULT_WAIT_FOR_DATA_SECONDS,
  datasetEnvName,
  datasetVariableClash,
  datasetVariableKey,
  datasetVariables,
  parseDatasetRef,
  pinRefs,
  resolveDatasetRefs,
  type DatasetVersionView,
} from '../../src/domain/dataset-refs.js';
import { parseExperimentRequest } from '../../src/domain/request.js';

const version = (v: number, status: DatasetVersionView['status']): DatasetVersionView => ({
  dataset: 'climbmix',
  version: v,
  status,
  records: 10 * v,
  manifestSha256: status === 'open' ? null : `m${v}`.padEnd(64, '0'),
  shards: [
    { index: 1, sha256: 'b'.repeat(64), bytes: 2, fileName: 'b.jsonl' },
    { index: 0, sha256: 'a'.repeat(64), bytes: 1, fileName: 'a.jsonl' },
  ],
});
const versions = [version(1, 'passed'), version(2, 'failed'), version(3, 'passed'), version(4, 'sealed')];
const lookup = {
  latestPassed: (d: string) =>
    d === 'climbmix' ? ([...versions].reverse().find((v) => v.status === 'passed') ?? null) : null,
  version: (d: string, v: number) => (d === 'climbmix' ? (versions.find((x) => x.version === v) ?? null) : null),
};

describe('dataset references', () => {
  it('tells versions from paths', () => {
    expect(parseDatasetRef('climbmix@latest')).toEqual({
      kind: 'version',
      ref: 'climbmix@latest',
      dataset: 'climbmix',
      version: 'latest',
    });
    expect(parseDatasetRef('climbmix@12')).toMatchObject({ kind: 'version', version: 12 });
    for (const path of ['climbmix', 'climbmix/train', 'a@b@latest', 'x@0', 'x@-1', 'x@1.5', '@latest'])
      expect(parseDatasetRef(path).kind).toBe('path');
  });

  it('pins @latest to the newest passed version and @V exactly, shards in order', () => {
    const resolution = resolveDatasetRefs(['climbmix@latest', 'climbmix@1', 'local/path'], lookup);
    expect(resolution.refusal).toBeNull();
    expect(resolution.unavailable).toEqual([]);
    expect(resolution.pinned.map((p) => [p.ref, p.version])).toEqual([
      ['climbmix@latest', 3],
      ['climbmix@1', 1],
    ]);
    expect(resolution.pinned[0]!.shards.map((s) => s.index)).toEqual([0, 1]);
  });

  it('refuses a version that failed its gates, and waits for one not passed yet', () => {
    expect(resolveDatasetRefs(['climbmix@2'], lookup).refusal).toMatch(/climbmix@2 failed its gates/);
    expect(resolveDatasetRefs(['climbmix@4'], lookup).unavailable).toEqual([
      'climbmix@4 is sealed: its gates have not passed yet',
    ]);
    expect(resolveDatasetRefs(['climbmix@9', 'other@latest'], lookup).unavailable).toEqual([
      'climbmix@9 does not exist yet',
      'other has no version that passed its gates yet',
    ]);
  });

  it('makes reruns exact: @latest becomes the pinned version, paths stay', () => {
    const { pinned } = resolveDatasetRefs(['climbmix@latest'], lookup);
    expect(pinRefs(['climbmix@latest', 'local/path'], pinned)).toEqual(['climbmix@3', 'local/path']);
  });

  it('tells the script where each dataset is', () => {
    expect(datasetEnvName('climb-mix.v2')).toBe('EXPCTL_DATASET_CLIMB_MIX_V2');
    expect(datasetVariables({ ngram: '/d/ngram@3' })).toEqual({
      EXPCTL_DATASETS: '{"ngram":"/d/ngram@3"}',
      EXPCTL_DATASET_NGRAM: '/d/ngram@3',
      EXPCTL_DATASET_DIR: '/d/ngram@3',
    });
    expect(datasetVariables({ a: '/a', b: '/b' })).not.toHaveProperty('EXPCTL_DATASET_DIR');
    expect(datasetVariables({})).toEqual({});
  });

  it('names a plain path by the path itself and a version by its dataset, under one rule', () => {
    expect(datasetVariableKey('ngram@latest')).toBe('ngram');
    expect(datasetVariableKey('ngram@3')).toBe('ngram');
    expect(datasetVariableKey('corpus/train')).toBe('corpus/train');
    expect(datasetEnvName(datasetVariableKey('corpus/train'))).toBe('EXPCTL_DATASET_CORPUS_TRAIN');
  });

  it('refuses references that would share one variable, and allows distinct ones', () => {
    expect(datasetVariableClash(['corpus/train', 'ngram@latest', 'eval-set'])).toBeNull();
    expect(datasetVariableClash(['a-b', 'a_b'])).toMatch(/datasets a-b and a_b would both .* EXPCTL_DATASET_A_B/);
    expect(datasetVariableClash(['ngram@1', 'ngram@2'])).toMatch(/ngram@1 and ngram@2 .* EXPCTL_DATASET_NGRAM/);
    expect(datasetVariableClash(['ngram', 'ngram@latest'])).toMatch(/EXPCTL_DATASET_NGRAM/);
    // The same reference twice names one directory: nothing is ambiguous.
    expect(datasetVariableClash(['eval-set', 'eval-set'])).toBeNull();
  });
});

describe('--wait-for-data', () => {
  const base = { tag: ['t1'], hypothesis: ['h'], category: ['other'] };
  it('takes seconds, or the default when given alone', () => {
    expect(parseRunFlags({ ...base, waitForData: '120' }).flags.waitForDataSeconds).toBe(120);
    expect(parseRunFlags({ ...base, waitForData: true }).flags.waitForDataSeconds).toBe(DEFAULT_WAIT_FOR_DATA_SECONDS);
    expect(parseRunFlags(base).flags.waitForDataSeconds).toBeUndefined();
    expect(parseRunFlags({ ...base, waitForData: 'soon' }).problems).toEqual([
      expect.stringMatching(/^--wait-for-data "soon": expected a decimal number/),
    ]);
  });
  it('is part of the request, and absent from requests that do not wait', () => {
    const request = {
      tag: 't1',
      hypothesis: 'h',
      category: 'other',
      repo: '/r',
      commit: 'a'.repeat(40),
      datasets: ['ngram@latest'],
    };
    expect(parseExperimentRequest(request)).not.toHaveProperty('waitForDataSeconds');
    expect(parseExperimentRequest({ ...request, waitForDataSeconds: 60 }).waitForDataSeconds).toBe(60);
    expect(() => parseExperimentRequest({ ...request, waitForDataSeconds: -1 })).toThrow(/waitForDataSeconds/);
  });
});
