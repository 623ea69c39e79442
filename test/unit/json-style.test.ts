import { describe, expect, it } from 'vitest';
import { snakeCase, toJsonStyle } from '../../src/cli/json-style.js';
import { OUTPUT_SCHEMAS, outputJsonSchema } from '../../src/cli/output-schemas.js';
import { diffRecords } from '../../src/catalog/reports.js';
import type { ExperimentRecord } from '../../src/catalog/record.js';
import { applyOutcome, newTagState } from '../../src/domain/decision.js';
import { drainOutcome } from '../../src/domain/fleet.js';
import { FIGURE_DECIMALS, roundFigure } from '../../src/domain/metrics.js';

describe('snakeCase', () => {
  it('turns camelCase field names into snake_case', () => {
    expect(snakeCase('metricName')).toBe('metric_name');
    expect(snakeCase('peakVramMb')).toBe('peak_vram_mb');
    expect(snakeCase('patchSha256')).toBe('patch_sha256');
    expect(snakeCase('gpu0Id')).toBe('gpu0_id');
    expect(snakeCase('parseURLText')).toBe('parse_url_text');
    expect(snakeCase('id')).toBe('id');
    expect(snakeCase('experiment_id')).toBe('experiment_id');
  });

  it('leaves every key that is not a camelCase identifier alone', () => {
    for (const key of ['HF_TOKEN', 'Cargo.lock', 'schema.column_removed', 'gpu-a/0', '$schema', 'T', '']) {
      expect(snakeCase(key)).toBe(key);
    }
  });
});

describe('toJsonStyle', () => {
  it('converts field names at every depth, in arrays too', () => {
    expect(
      toJsonStyle({
        experimentId: 'e',
        decision: { comparedWith: { experimentId: 'p', metric: 1 }, nearMiss: true },
        timeline: [{ status: 'queued', queuedMs: 3 }],
      }),
    ).toEqual({
      experiment_id: 'e',
      decision: { compared_with: { experiment_id: 'p', metric: 1 }, near_miss: true },
      timeline: [{ status: 'queued', queued_ms: 3 }],
    });
  });

  it('keeps the names of maps keyed by name, and converts what they hold', () => {
    const out = toJsonStyle({
      metrics: { trainLoss: 1.5, val_bpb: 0.99 },
      environment: { software: { nodeJs: 'v20' }, lockfiles: { 'uv.lock': 'ab' }, variables: { hfToken: 'x' } },
      request: { env: { myVar: '1', HF_HOME: '/h' }, secrets: { apiKey: '[secret]' } },
      hosts: { gpuBox: { lastHeartbeat: 1 } },
      byStatus: { completed: 2 },
    });
    expect(out).toEqual({
      metrics: { trainLoss: 1.5, val_bpb: 0.99 },
      environment: { software: { nodeJs: 'v20' }, lockfiles: { 'uv.lock': 'ab' }, variables: { hfToken: 'x' } },
      request: { env: { myVar: '1', HF_HOME: '/h' }, secrets: { apiKey: '[secret]' } },
      hosts: { gpuBox: { last_heartbeat: 1 } },
      by_status: { completed: 2 },
    });
  });

  it("keeps the user's own config exactly as written", () => {
    const config = { learningRate: 0.1, nested: { warmupSteps: 5 } };
    expect(toJsonStyle({ resolvedConfig: config })).toEqual({ resolved_config: config });
  });

  it('rounds the fields metric, best and delta as the metric is printed, and nothing else', () => {
    expect(
      toJsonStyle({
        metric: 0.9979000000000001,
        best: 1.0000004999,
        delta: -1.9999999998354667e-6,
        comparedWith: { metric: 2.0000001234 },
        keepRate: 0.3333333333333333,
        metrics: { delta: 0.1234567891 },
      }),
    ).toEqual({
      metric: 0.9979,
      best: 1,
      delta: -0.000002,
      compared_with: { metric: 2 },
      keep_rate: 0.3333333333333333,
      // A value the script printed, under a name of its own, is the script's: never changed.
      metrics: { delta: 0.1234567891 },
    });
    expect(toJsonStyle({ metric: null, best: 'n/a' })).toEqual({ metric: null, best: 'n/a' });
  });

  it('is idempotent: output already in the style is unchanged', () => {
    const result = { experiment_id: 'e', metric_name: 'val_bpb', metric: 0.5, near_miss: false, env: { A_B: '1' } };
    expect(toJsonStyle(toJsonStyle(result))).toEqual(result);
  });
});

describe('roundFigure (the rule, in src/domain)', () => {
  it('rounds to the metric’s 6 decimals and never gives -0', () => {
    expect(FIGURE_DECIMALS).toBe(6);
    expect(roundFigure(0.0018080000000000318)).toBe(0.001808);
    expect(roundFigure(-1.9999999998354667e-6)).toBe(-0.000002);
    expect(Object.is(roundFigure(-1e-9), 0)).toBe(true);
    expect(roundFigure(Number.POSITIVE_INFINITY)).toBe(Number.POSITIVE_INFINITY);
  });

  it("is what a decision's delta and a diff's deltas are made with", () => {
    const outcome = (experimentId: string, metric: number) =>
      ({ experimentId, status: 'completed', metric, acceleratorClass: 'cpu', commit: experimentId }) as const;
    const first = applyOutcome(newTagState('t'), outcome('a', 1.0064)).state;
    const { decision } = applyOutcome(first, outcome('b', 1.008208));
    expect(decision.delta).toBe(0.001808);
    const record = (metric: number, metrics: Record<string, number>) =>
      ({
        id: String(metric),
        metric,
        metrics,
        metricName: 'val_bpb',
        resolvedConfig: {},
        commit: 'c',
      }) as never as ExperimentRecord;
    const diff = diffRecords(record(0.3, { loss: 0.1 }), record(0.1, { loss: 0.3 }));
    expect(diff.metric.delta).toBe(-0.2);
    expect(diff.metrics[0]!.delta).toBe(0.2);
  });
});

describe('drainOutcome', () => {
  const entry = (slotId: string, draining: boolean, experimentId?: string) => ({
    slot: { slotId },
    draining,
    lease: experimentId ? { experimentId } : null,
  });

  it('says which slots changed, which already were so, and which runs hold leases there', () => {
    const entries = [entry('h/0', false, 'exp-1'), entry('h/1', true), entry('h/2', false)];
    expect(drainOutcome('h', true, entries)).toEqual({
      target: 'h',
      drained: true,
      changed: ['h/0', 'h/2'],
      unchanged: ['h/1'],
      leased: [{ slotId: 'h/0', experimentId: 'exp-1' }],
    });
    expect(drainOutcome('h', false, entries)).toMatchObject({ changed: ['h/1'], unchanged: ['h/0', 'h/2'] });
  });
});

describe('the output schemas', () => {
  it('each is a JSON Schema whose field names are in the output style', () => {
    for (const name of Object.keys(OUTPUT_SCHEMAS) as (keyof typeof OUTPUT_SCHEMAS)[]) {
      const schema = outputJsonSchema(name);
      const names: string[] = [];
      const walk = (node: unknown): void => {
        if (Array.isArray(node)) return node.forEach(walk);
        if (node === null || typeof node !== 'object') return;
        const properties = (node as { properties?: Record<string, unknown> }).properties;
        if (properties) names.push(...Object.keys(properties));
        Object.values(node).forEach(walk);
      };
      walk(schema);
      expect(names.length, name).toBeGreaterThan(0);
      for (const field of names) expect(snakeCase(field), `${name}: ${field}`).toBe(field);
    }
  });
});
