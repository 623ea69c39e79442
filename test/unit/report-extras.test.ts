import { describe, expect, it } from 'vitest';
import { chartAxis, extrasOfTag, tagReportHtml, type ReportExtras } from '../../src/catalog/html.js';
import type { ExperimentRecord } from '../../src/catalog/record.js';
import { slotHoursText, summarize } from '../../src/catalog/reports.js';

const extras: ReportExtras = {
  versions: [
    {
      dataset: 'ngram',
      version: 1,
      status: 'passed',
      workflowId: 'expctl-dataset-ngram-v1',
      expectedShards: 4,
      arrivedShards: 4,
      openedAt: '2026-11-26T00:00:00Z',
      sealedAt: '2026-11-26T00:01:00Z',
      sealReason: 'complete',
      decidedAt: '2026-11-26T00:01:01Z',
      records: 251,
      manifestSha256: 'a'.repeat(64),
    },
    {
      dataset: 'ngram',
      version: 2,
      status: 'failed',
      workflowId: 'expctl-dataset-ngram-v2',
      expectedShards: 4,
      arrivedShards: 3,
      openedAt: '2026-11-27T00:00:00Z',
      sealedAt: '2026-11-27T01:00:00Z',
      sealReason: 'lateness',
      decidedAt: '2026-11-27T01:00:01Z',
      records: null,
      manifestSha256: null,
    },
  ],
  gates: [
    { day: '2026-11-26', dataset: 'ngram', gate: 'completeness', checked: 1, passed: 1, passRate: 1, failures: {} },
    {
      day: '2026-11-27',
      dataset: 'ngram',
      gate: 'completeness',
      checked: 2,
      passed: 1,
      passRate: 0.5,
      failures: { 'completeness.missing_shards': 1 },
    },
  ],
  models: [
    {
      model: 'lm<script>',
      aliases: { staging: 1 },
      versions: [
        {
          version: 1,
          experiment_id: 'exp-t-1',
          artifact: { path: 'model.json', sha256: 'b'.repeat(64) },
          holdout_experiment_id: 'exp-holdout-1',
          holdout_metric: 2.13,
          metric_name: 'val_bpb',
          direction: 'minimize',
          promotion_id: 'expctl-promotion-lm-1',
          incumbent_version: null,
          incumbent_metric: null,
          threshold: 0.01,
          requested_by: 'alice',
          approved_by: null,
          created_at: '2026-11-26T00:02:00Z',
        },
      ],
      alias_history: [
        {
          alias: 'staging',
          version: 1,
          previous_version: 2,
          at: '2026-11-27T02:00:00Z',
          by: 'bob',
          kind: 'rollback',
          promotion_id: null,
          reason: null,
        },
      ],
      promotions: [
        {
          promotion_id: 'expctl-promotion-lm-2',
          alias: 'staging',
          experiment_id: 'exp-t-2',
          status: 'blocked',
          code: 'promotion.regression',
          candidate_metric: 3,
          incumbent_version: 1,
          incumbent_metric: 2.13,
          threshold: 0.01,
          requested_by: 'alice',
          decided_by: null,
          started_at: '2026-11-27T00:00:00Z',
          ended_at: '2026-11-27T00:01:00Z',
        },
      ],
    },
  ] as unknown as ReportExtras['models'],
};

/** A run of tag t, as the catalog lists it; only the fields these reports read matter. */
function runOf(id: string, metric: number | null, decision: 'keep' | 'discard' | null, datasets: string[] = []) {
  return {
    id,
    tag: 't',
    category: 'other',
    hypothesis: id,
    description: '',
    status: metric === null ? 'command_failed' : 'completed',
    decision,
    metricName: 'val_bpb',
    metricDirection: 'minimize',
    metric,
    commit: id.padEnd(40, '0'),
    slotSeconds: 1800,
    acceleratorClass: 'cpu',
    queuedMs: 0,
    datasetVersions: datasets.map((ref) => ({ ref, dataset: ref.split('@')[0]!, version: Number(ref.split('@')[1]) })),
  } as unknown as Omit<ExperimentRecord, 'events' | 'artifacts'>;
}
/** The same fleet, and a demo's dataset and model that this tag never used. */
const fleet: ReportExtras = {
  versions: [...extras.versions, { ...extras.versions[0]!, dataset: 'demo-data', version: 1 }],
  gates: [...extras.gates, { ...extras.gates[0]!, dataset: 'demo-data', gate: 'demo-gate' }],
  models: [
    ...extras.models,
    {
      ...extras.models[0]!,
      model: 'demo-model',
      versions: [{ ...extras.models[0]!.versions[0]!, experiment_id: 'exp-demo-1' }],
      promotions: [],
    },
  ],
};

describe('the HTML report: data and models', () => {
  const html = tagReportHtml(
    't',
    [runOf('exp-t-1', 2.1, 'keep', ['ngram@1']), runOf('exp-t-2', 2.2, 'discard', ['ngram@1'])],
    fleet,
  );
  it('lists dataset versions and gate pass rates with their failure codes', () => {
    expect(html).toMatch(/<tr><td>ngram@1<\/td><td class="passed">passed<\/td><td>4\/4<\/td><td>251<\/td>/);
    expect(html).toMatch(/<td>ngram@2<\/td><td class="failed">failed<\/td><td>3\/4<\/td><td>-<\/td><td>lateness<\/td>/);
    expect(html).toContain('<td>50%</td><td><code>completeness.missing_shards</code>×1</td>');
    // Both of the tag's runs were pinned to ngram@1, none to v2.
    expect(html).toMatch(/<td>ngram@1<\/td>.*<td>2<\/td><\/tr>/);
    expect(html).toMatch(/<td>ngram@2<\/td>.*<td>0<\/td><\/tr>/);
  });
  it("shows only the data and models the tag's runs used, never another tag's", () => {
    expect(html).not.toContain('demo-data');
    expect(html).not.toContain('demo-gate');
    expect(html).not.toContain('demo-model');
    const other = extrasOfTag([runOf('exp-demo-1', 1, 'keep', ['demo-data@1'])], fleet);
    expect(other.versions.map((v) => `${v.dataset}@${v.version}`)).toEqual(['demo-data@1']);
    expect(other.gates.map((g) => g.gate)).toEqual(['demo-gate']);
    expect(other.models.map((m) => m.model)).toEqual(['demo-model']);
    const none = tagReportHtml('t', [runOf('exp-x', 1, 'keep')], fleet);
    expect(none).toContain("This tag's runs used no dataset versions.");
    expect(none).toContain("No model was made from this tag's runs.");
  });
  it('lists model versions with aliases and evidence, rollbacks and blocked promotions, escaped', () => {
    expect(html).toContain('<td>lm&lt;script&gt;@1</td><td>staging</td><td><code>exp-t-1</code></td><td>2.13</td>');
    expect(html).toContain('rollback of staging v2 → v1 by bob');
    expect(html).toContain('blocked (<code>promotion.regression</code>)');
    expect(html).not.toContain('lm<script>');
  });
  it('leaves both sections out when none are given', () => {
    expect(tagReportHtml('t', [])).not.toContain('<h2>Data</h2>');
  });
});

describe('the HTML report: chart and leaderboard', () => {
  const points = (ys: [number | null, string][]) => ys.map(([y, kind]) => ({ y, kind }));

  it("clips a baseline far from the improvements, so they don't look flat, and marks it", () => {
    const axis = chartAxis(
      points([
        [3.47, 'keep'],
        [2.4, 'keep'],
        [2.6, 'discard'],
        [2.2, 'keep'],
        [2.04, 'keep'],
      ]),
      'minimize',
    )!;
    expect(axis.baseline).toBe(3.47);
    expect(axis.baselineClipped).toBe(true);
    // The improvements (2.04 to 2.40, a spread of 0.36) fill the axis, with room for near discards.
    expect(axis.lo).toBeCloseTo(2.04 - 0.36 * 0.08, 9);
    expect(axis.hi).toBeCloseTo(2.4 + 0.36 * 0.5, 9);
    expect(axis.hi).toBeLessThan(3.47);
  });

  it('keeps the baseline on the axis when it is near, and clips the other side when maximizing', () => {
    const near = chartAxis(
      points([
        [2.5, 'keep'],
        [2.4, 'keep'],
        [2.2, 'keep'],
        [null, 'crash'],
      ]),
      'minimize',
    )!;
    expect(near).toMatchObject({ baseline: 2.5, baselineClipped: false });
    expect(near.hi).toBeGreaterThan(2.5);
    const up = chartAxis(
      points([
        [0.1, 'keep'],
        [0.8, 'keep'],
        [0.9, 'keep'],
      ]),
      'maximize',
    )!;
    expect(up).toMatchObject({ baseline: 0.1, baselineClipped: true });
    expect(up.lo).toBeGreaterThan(0.1);
    expect(chartAxis(points([[null, 'crash']]), 'minimize')).toBeNull();
    const single = chartAxis(points([[1, 'keep']]), 'minimize')!;
    expect(single).toMatchObject({ baseline: 1, baselineClipped: false });
    expect(single.lo < 1 && single.hi > 1).toBe(true);
  });

  it('says how many runs the leaderboard leaves out', () => {
    const runs = Array.from({ length: 23 }, (_, i) => runOf(`exp-t-${i}`, 3 - i * 0.01, i === 0 ? 'keep' : 'discard'));
    const html = tagReportHtml('t', [...runs, runOf('exp-t-crash', null, null)]);
    expect(html).toContain(
      '<p id="leaderboard-note" data-shown="20" data-left-out="3">the best 20 of 23 runs with a metric; 3 more not shown',
    );
    expect(html.match(/<tr><td>\d+<\/td><td>\d\.\d{6}<\/td>/g)).toHaveLength(20);
    expect(tagReportHtml('t', runs.slice(0, 5))).toContain('data-left-out="0">all 5 runs with a metric');
  });
});

describe('slot time in reports', () => {
  it('never reports CPU slots as GPU-hours', () => {
    const cpu = [runOf('exp-c1', 2, 'keep'), runOf('exp-c2', 2.1, 'discard')];
    const summary = summarize('t', cpu);
    expect(summary).toMatchObject({ gpuHours: 0, cpu_slot_hours: 1 });
    expect(slotHoursText(summary)).toBe('1.000 CPU-slot hours');
    expect(tagReportHtml('t', cpu)).toContain('<span id="slot-hours">1.00 CPU-slot hours</span>');
    expect(tagReportHtml('t', cpu)).not.toContain('GPU-hours');
    const mixed = summarize('t', [
      ...cpu,
      { ...runOf('exp-g1', 1.9, 'keep'), acceleratorClass: 'h100', slotSeconds: 900 },
    ]);
    expect(mixed).toMatchObject({ gpuHours: 0.25, cpu_slot_hours: 1 });
    expect(slotHoursText(mixed)).toBe('0.250 GPU-hours, 1.000 CPU-slot hours');
    // A run never placed (refused) has no class and no slot time.
    expect(
      slotHoursText(summarize('t', [{ ...runOf('exp-r', null, null), acceleratorClass: null, slotSeconds: null }])),
    ).toBe('no slot time yet');
  });
});
