import type { TerminalStatus } from '../domain/experiment.js';
import { resultKind } from '../domain/outcome.js';
import { scrubText } from '../domain/redact.js';
import type { DatasetVersionRow, GateStatRow } from './datasets.js';
import type { modelReport } from './models.js';
import type { ExperimentRecord } from './record.js';
import { resultRuns, summarize } from './reports.js';

type Listed = Omit<ExperimentRecord, 'events' | 'artifacts'>;

const percent = (rate: number) => `${(rate * 100).toFixed(0)}%`;
/** Text of the record for the page: scrubbed of what looks like a credential (the record is already), then escaped. */
const escape = (text: string) =>
  scrubText(text).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

/** The fleet-wide part of a report: dataset versions and their gates, models and their promotions. */
export interface ReportExtras {
  versions: DatasetVersionRow[];
  gates: GateStatRow[];
  models: Awaited<ReturnType<typeof modelReport>>[];
}

function dataSection(extras: ReportExtras): string {
  const versions = extras.versions
    .map(
      (v) =>
        `<tr><td>${escape(v.dataset)}@${v.version}</td><td class="${v.status}">${v.status}</td><td>${v.arrivedShards}/${v.expectedShards}</td><td>${v.records ?? '-'}</td><td>${escape(v.sealReason ?? '-')}</td><td>${escape(v.decidedAt ?? '-')}</td></tr>`,
    )
    .join('\n');
  const gates = extras.gates
    .map(
      (g) =>
        `<tr><td>${g.day}</td><td>${escape(g.gate)}</td><td>${g.checked}</td><td>${percent(g.passRate)}</td><td>${
          Object.entries(g.failures)
            .map(([code, n]) => `<code>${escape(code)}</code>×${n}`)
            .join(', ') || '-'
        }</td></tr>`,
    )
    .join('\n');
  return `<h2>Data</h2>
<table id="dataset-versions"><tr><th>version</th><th>status</th><th>shards</th><th>records</th><th>sealed by</th><th>decided</th></tr>
${versions}
</table>
<h3>Gate pass rates by day</h3>
<table id="gates"><tr><th>day</th><th>gate</th><th>checked</th><th>pass rate</th><th>failure codes</th></tr>
${gates}
</table>`;
}

function modelsSection(extras: ReportExtras): string {
  const rows = extras.models
    .flatMap((m) =>
      m.versions.map((v) => {
        const aliases = Object.entries(m.aliases)
          .filter(([, held]) => held === v.version)
          .map(([alias]) => alias);
        const versus =
          v.incumbent_version === null ? 'first' : `v${v.incumbent_version} (${v.incumbent_metric ?? '-'})`;
        return `<tr><td>${escape(m.model)}@${v.version}</td><td>${escape(aliases.join(', ') || '-')}</td><td><code>${escape(v.experiment_id)}</code></td><td>${v.holdout_metric ?? '-'}</td><td>${escape(versus)}</td><td>${v.threshold ?? '-'}</td><td>${escape(v.approved_by ?? '-')}</td></tr>`;
      }),
    )
    .join('\n');
  const events = extras.models
    .flatMap((m) => [
      ...m.alias_history
        .filter((move) => move.kind === 'rollback')
        .map(
          (move) =>
            `<li>${escape(m.model)}: rollback of ${escape(move.alias)} v${move.previous_version} → v${move.version} by ${escape(move.by)} at ${escape(move.at)}</li>`,
        ),
      ...m.promotions
        .filter((p) => p.status !== 'promoted')
        .map(
          (p) =>
            `<li>${escape(m.model)}@${escape(p.alias)}: <code>${escape(p.experiment_id)}</code> ${escape(p.status)}${p.code ? ` (<code>${escape(p.code)}</code>)` : ''}</li>`,
        ),
    ])
    .join('\n');
  return `<h2>Models</h2>
<table id="models"><tr><th>version</th><th>aliases</th><th>experiment</th><th>holdout metric</th><th>compared with</th><th>threshold</th><th>approved by</th></tr>
${rows}
</table>
<ul id="promotion-events">${events}</ul>`;
}

/**
 * One self-contained HTML page for a tag: progression chart (kept runs as a staircase, discarded
 * and crashed runs as dots), leaderboard and category table. No external assets; the chart is
 * drawn in the browser from the data embedded in the page.
 */
export function tagReportHtml(tag: string, records: Listed[], extras?: ReportExtras): string {
  const summary = summarize(tag, records);
  const runs = resultRuns(records);
  const direction = runs[0]?.metricDirection ?? 'minimize';
  const metricName = runs[0]?.metricName ?? 'val_bpb';
  const points = runs.map((r, i) => {
    const kind = resultKind(r.status as TerminalStatus, r.decision);
    return { x: i + 1, y: kind === 'crash' ? null : r.metric, kind, id: r.id, label: scrubText(r.hypothesis) };
  });
  const leaderboard = runs
    .filter((r) => r.metric !== null && r.status === 'completed')
    .sort((a, b) => (direction === 'minimize' ? a.metric! - b.metric! : b.metric! - a.metric!))
    .slice(0, 20);
  const rows = leaderboard
    .map(
      (r, i) =>
        `<tr><td>${i + 1}</td><td>${r.metric!.toFixed(6)}</td><td>${escape(r.decision ?? '')}</td><td><code>${r.commit.slice(0, 7)}</code></td><td>${escape(r.category)}</td><td>${escape(r.hypothesis)}</td><td><code>${escape(r.id)}</code></td></tr>`,
    )
    .join('\n');
  const categoryRows = summary.categories
    .map(
      (c) =>
        `<tr><td>${escape(c.category)}</td><td>${c.runs}</td><td>${c.kept}</td><td>${(c.keepRate * 100).toFixed(0)}%</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>expctl: ${escape(tag)}</title>
<style>
body{font:14px system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px}table{border-collapse:collapse;margin:12px 0}
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}th{background:#f4f4f4}.kpi span{display:inline-block;margin-right:24px}
svg{border:1px solid #ddd;background:#fff}.keep{fill:#1a7f37}.passed{color:#1a7f37}.failed{color:#cf222e}.discard{fill:#999}.crash{fill:#cf222e}
</style></head><body>
<h1>Tag ${escape(tag)}: ${escape(metricName)} (${direction === 'minimize' ? 'lower' : 'higher'} is better)</h1>
<p class="kpi"><span>${summary.runs} runs</span>
<span id="kept" data-count="${summary.kept}" data-rate="${summary.keepRate}">${summary.kept} kept (${percent(summary.keepRate)})</span>
<span id="crashed" data-count="${summary.crashed}" data-rate="${summary.crashRate}">${summary.crashed} crashed (${percent(summary.crashRate)})</span>
<span>best ${summary.best ? summary.best.metric.toFixed(6) : '-'}</span>
<span>not counted: ${summary.refused} refused, ${summary.infrastructure} infrastructure failures, ${summary.canceled} canceled</span>
<span>${summary.gpuHours.toFixed(2)} GPU-hours</span></p>
<svg id="progression" width="900" height="360" role="img" aria-label="metric progression"></svg>
<h2>Leaderboard</h2>
<table id="leaderboard"><tr><th>#</th><th>${escape(metricName)}</th><th>decision</th><th>commit</th><th>category</th><th>hypothesis</th><th>experiment</th></tr>
${rows}
</table>
<h2>Categories</h2>
<table id="categories"><tr><th>category</th><th>runs</th><th>kept</th><th>keep rate</th></tr>
${categoryRows}
</table>
${extras ? dataSection(extras) : ''}
${extras ? modelsSection(extras) : ''}
<script id="data" type="application/json">${JSON.stringify({ points, direction }).replace(/</g, '\\u003c')}</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById('data').textContent);
  var svg = document.getElementById('progression');
  var ns = 'http://www.w3.org/2000/svg', W = 900, H = 360, P = 48;
  var ys = data.points.filter(function (p) { return p.y !== null; }).map(function (p) { return p.y; });
  if (ys.length === 0) return;
  var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys); if (hi === lo) { hi += 1; lo -= 1; }
  var pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
  var n = data.points.length;
  function X(x) { return P + (W - 2 * P) * (n === 1 ? 0.5 : (x - 1) / (n - 1)); }
  function Y(y) { return H - P - (H - 2 * P) * (y - lo) / (hi - lo); }
  function el(name, attrs) { var e = document.createElementNS(ns, name); for (var k in attrs) e.setAttribute(k, attrs[k]); svg.appendChild(e); return e; }
  el('line', { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: '#888' });
  el('line', { x1: P, y1: P, x2: P, y2: H - P, stroke: '#888' });
  [lo, (lo + hi) / 2, hi].forEach(function (v) { var t = el('text', { x: 4, y: Y(v) + 4, 'font-size': 11 }); t.textContent = v.toFixed(4); });
  var best = null, d = '';
  data.points.forEach(function (p) {
    if (p.kind !== 'keep') return;
    if (best === null) d += 'M' + X(p.x) + ',' + Y(p.y); else d += ' H' + X(p.x) + ' V' + Y(p.y);
    best = p;
  });
  if (best) { d += ' H' + X(n); el('path', { id: 'staircase', d: d, fill: 'none', stroke: '#1a7f37', 'stroke-width': 2 }); }
  data.points.forEach(function (p) {
    var y = p.y === null ? H - P / 2 : Y(p.y); // crashes have no metric: a row of dots under the axis
    var c = el('circle', { cx: X(p.x), cy: y, r: p.kind === 'keep' ? 5 : 4, class: p.kind });
    var title = document.createElementNS(ns, 'title'); title.textContent = p.id + ': ' + p.label + (p.y === null ? ' (crash)' : ' = ' + p.y); c.appendChild(title);
  });
  [['keep', 'kept (best so far: the staircase)'], ['discard', 'discarded'], ['crash', 'crashed (below the axis)']].forEach(function (item, i) {
    el('circle', { cx: W - 250, cy: 18 + i * 16, r: 4, class: item[0] + ' legend' });
    var t = el('text', { x: W - 240, y: 22 + i * 16, 'font-size': 11 }); t.textContent = item[1];
  });
  svg.setAttribute('data-rendered', String(n));
})();
</script>
</body></html>
`;
}
