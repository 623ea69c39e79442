import { describe, expect, it } from 'vitest';
import { tagReportHtml, type ReportExtras } from '../../src/catalog/html.js';

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
    { day: '2026-11-26', gate: 'completeness', checked: 1, passed: 1, passRate: 1, failures: {} },
    {
      day: '2026-11-27',
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

describe('the HTML report: data and models', () => {
  const html = tagReportHtml('t', [], extras);
  it('lists dataset versions and gate pass rates with their failure codes', () => {
    expect(html).toMatch(/<tr><td>ngram@1<\/td><td class="passed">passed<\/td><td>4\/4<\/td><td>251<\/td>/);
    expect(html).toMatch(/<td>ngram@2<\/td><td class="failed">failed<\/td><td>3\/4<\/td><td>-<\/td><td>lateness<\/td>/);
    expect(html).toContain('<td>50%</td><td><code>completeness.missing_shards</code>×1</td>');
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
