import { describe, expect, it } from 'vitest';
import { differingFields, fingerprintRequest } from '../../src/client/request-digest.js';
import { canonicalJson } from '../../src/security/content-digest.js';
import { parseExperimentRequest } from '../../src/domain/request.js';

const request = (overrides: Record<string, unknown> = {}) =>
  parseExperimentRequest({
    tag: 't',
    hypothesis: 'h',
    category: 'other',
    repo: '/r',
    commit: 'a'.repeat(40),
    env: { LR: '0.1', API_TOKEN: 'hunter2-secret' },
    ...overrides,
  });

describe('request fingerprints for idempotency keys', () => {
  it('does not depend on key order or on defaults being spelled out', () => {
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] })).toBe('{"a":[{"c":3,"d":2}],"b":1}');
    const implicit = fingerprintRequest('exp-1', request(), 0);
    const explicit = fingerprintRequest(
      'exp-1',
      request({ timeBudgetSeconds: 300, maxReplacements: 1, env: { API_TOKEN: 'hunter2-secret', LR: '0.1' } }),
      0,
    );
    expect(explicit).toEqual(implicit);
  });

  it('names the fields that differ, environment variables one by one', () => {
    const a = fingerprintRequest('exp-1', request(), 0);
    const b = fingerprintRequest(
      'exp-1',
      request({ hypothesis: 'other', env: { LR: '0.2', API_TOKEN: 'hunter2-secret', NEW: '1' } }),
      5,
    );
    expect(b.digest).not.toBe(a.digest);
    expect(differingFields(a.fields, b.fields)).toEqual(['env.LR', 'env.NEW', 'hypothesis', 'priority']);
  });

  it('compares secrets by name only: a digest keyed with the (public) experiment ID could be guessed back', () => {
    const a = fingerprintRequest('exp-1', request(), 0);
    const changed = fingerprintRequest('exp-1', request({ env: { LR: '0.1', API_TOKEN: 'changed-value' } }), 0);
    expect(changed).toEqual(a);
    const withSecret = fingerprintRequest('exp-1', request({ secrets: { HF_TOKEN: 'hf_secret_value' } }), 0);
    expect(differingFields(a.fields, withSecret.fields)).toEqual(['secrets']);
    const otherValue = fingerprintRequest('exp-1', request({ secrets: { HF_TOKEN: 'hf_other_value' } }), 0);
    expect(otherValue).toEqual(withSecret);
    const gone = fingerprintRequest('exp-1', request({ env: { LR: '0.1' } }), 0);
    expect(differingFields(a.fields, gone.fields)).toEqual(['env.API_TOKEN']);
  });

  it('never holds a value in clear, secrets included', () => {
    const text = JSON.stringify(fingerprintRequest('exp-1', request(), 0));
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain('0.1');
    expect(text).not.toContain('"h"');
  });
});
