import { describe, expect, it } from 'vitest';
import { compareEnvironments, comparisonText, type RunEnvironmentFacts } from '../../src/domain/reproduction.js';

const original: RunEnvironmentFacts = {
  environment: {
    software: { python3: 'Python 3.11.2', git: 'git version 2.39.5', uv: 'uv 0.5.1' },
    driverVersion: '550.54.15',
    lockfiles: { 'uv.lock': 'a'.repeat(64) },
  },
  datasetVersions: [{ dataset: 'ngram', version: 1, manifestSha256: 'c'.repeat(64) }],
  acceleratorClass: 'h100',
};

describe('compareEnvironments (rerun)', () => {
  it('finds no difference in the same environment, and says it checked', () => {
    const same = compareEnvironments(original, structuredClone(original));
    expect(same).toEqual({ checked: true, differences: [] });
    expect(comparisonText(same)).toMatch(/^environment differences: none \(software, driver, lockfiles/);
  });

  it('names each difference: software, driver, lockfile, dataset version and accelerator class', () => {
    const rerun: RunEnvironmentFacts = {
      environment: {
        software: { python3: 'Python 3.12.1', git: 'git version 2.39.5' },
        driverVersion: '560.28.03',
        lockfiles: { 'uv.lock': 'b'.repeat(64), 'requirements.txt': 'd'.repeat(64) },
      },
      datasetVersions: [{ dataset: 'ngram', version: 2, manifestSha256: 'e'.repeat(64) }],
      acceleratorClass: 'a100',
    };
    const compared = compareEnvironments(original, rerun);
    expect(compared).toEqual({
      checked: true,
      differences: [
        { what: 'software python3', original: 'Python 3.11.2', rerun: 'Python 3.12.1' },
        { what: 'software uv', original: 'uv 0.5.1', rerun: null },
        { what: 'GPU driver', original: '550.54.15', rerun: '560.28.03' },
        { what: 'lockfile requirements.txt', original: null, rerun: 'd'.repeat(64) },
        { what: 'lockfile uv.lock', original: 'a'.repeat(64), rerun: 'b'.repeat(64) },
        { what: 'dataset ngram', original: `v1 (${'c'.repeat(12)})`, rerun: `v2 (${'e'.repeat(12)})` },
        { what: 'accelerator class', original: 'h100', rerun: 'a100' },
      ],
    });
    expect(comparisonText(compared)).toContain(
      'software python3: Python 3.11.2 -> Python 3.12.1; software uv: uv 0.5.1 -> (none)',
    );
  });

  it('a version with the same number but another manifest is a difference', () => {
    const rebuilt = {
      ...original,
      datasetVersions: [{ dataset: 'ngram', version: 1, manifestSha256: 'f'.repeat(64) }],
    };
    expect(compareEnvironments(original, rebuilt).differences).toEqual([
      { what: 'dataset ngram', original: `v1 (${'c'.repeat(12)})`, rerun: `v1 (${'f'.repeat(12)})` },
    ]);
  });

  it('says "not compared", never "none", when either side has no environment record', () => {
    const unplaced = { environment: null, datasetVersions: [], acceleratorClass: null };
    const before = compareEnvironments(unplaced, original);
    expect(before).toEqual({ checked: false, reason: 'the original run has no environment record', differences: [] });
    expect(comparisonText(before)).toBe('environment not compared: the original run has no environment record');
    expect(compareEnvironments(original, unplaced)).toMatchObject({
      checked: false,
      reason: 'the rerun ended before a host recorded its environment',
    });
  });
});
