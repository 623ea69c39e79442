import { describe, expect, it } from 'vitest';
import { retained, type RunRetention } from '../../src/catalog/retention.js';
import { documentKind, sha256sIn } from '../../src/store/references.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const C = 'c'.repeat(64);

describe('what store documents refer to', () => {
  it('finds every sha256 a document names, at any depth, and nothing that only looks like one', () => {
    const document = {
      files: [{ path: 'x.pt', sha256: A }],
      chunks: [{ offset: 0, bytes: 3, sha256: B }],
      patch: { patchSha256: C },
      note: A.replace('a', 'b'),
      sha256: 'not-a-hash',
      nested: [[{ sha256: A }]],
    };
    expect([...sha256sIn(document)].sort()).toEqual([A, B, C]);
    expect(sha256sIn(null).size).toBe(0);
  });

  it("names an object's kind by the document that names it", () => {
    expect(documentKind('runs/e/attempts/1/checkpoint')).toBe('checkpoints');
    expect(documentKind('runs/e/attempts/2/log')).toBe('logs');
    expect(documentKind('runs/e/attempts/1/artifacts')).toBe('artifacts');
    expect(documentKind('runs/e/patch')).toBe('patches');
    expect(documentKind('runs/e/fence')).toBe('other');
  });
});

describe('which runs retention keeps', () => {
  const cutoff = new Date('2026-11-01T00:00:00Z');
  const run = (over: Partial<RunRetention>): RunRetention => ({
    experimentId: 'e',
    live: false,
    kept: false,
    modelVersion: false,
    endedAt: '2026-10-01T00:00:00Z',
    ...over,
  });
  it.each([
    ['an old discarded run', run({}), false],
    ['a live run', run({ live: true, endedAt: null }), true],
    ['a kept run', run({ kept: true }), true],
    ["a model version's run", run({ modelVersion: true }), true],
    ['a run that ended after the cutoff', run({ endedAt: '2026-11-02T00:00:00Z' }), true],
    ['a finished run with no end time', run({ endedAt: null }), true],
  ])('%s: %s', (_, value, expected) => expect(retained(value, cutoff)).toBe(expected));
});
