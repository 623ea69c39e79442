import { DEFAULT_METRIC } from '../domain/decision.js';
import type { TerminalStatus } from '../domain/experiment.js';
import { resultKind } from '../domain/outcome.js';
import { scrubText } from '../domain/redact.js';
import type { DatasetVersionRow, GateStatRow } from './datasets.js';
import type { modelReport } from './models.js';
import type { ExperimentRecord } from './record.js';
import type { RunTelemetryRow } from './catalog.js';
import type { GpuSeries, SeriesPoint } from '../domain/telemetry.js';
import { resultRuns, slotHoursText, summarize } from './reports.js';

type Listed = Omit<ExperimentRecord, 'events' | 'artifacts'>;

const percent = (rate: number) => `${(rate * 100).toFixed(0)}%`;
/** Text of the record for the page: scrubbed of what looks like a credential (the record is already), then escaped. */
const escape = (text: string) =>
  scrubText(text).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );

/** The fleet's data and models as the catalog lists them: dataset versions and gates, models and promotions. */
export interface ReportExtras {
  versions: DatasetVersionRow[];
  /** Gate pass rates per day, each of one dataset. */
  gates: (GateStatRow & { dataset: string })[];
  models: Awaited<ReturnType<typeof modelReport>>[];
}

/** The datasets a tag's runs were pinned to, and the runs themselves (to find the models they made). */
export function usedByRuns(records: Pick<Listed, 'id' | 'datasetVersions'>[]): {
  datasets: Set<string>;
  /** Runs pinned to each version, by `NAME@V`. */
  runsByVersion: Map<string, number>;
  experiments: Set<string>;
} {
  const runsByVersion = new Map<string, number>();
  for (const record of records)
    for (const pinned of record.datasetVersions ?? []) {
      const key = `${pinned.dataset}@${pinned.version}`;
      runsByVersion.set(key, (runsByVersion.get(key) ?? 0) + 1);
    }
  return {
    datasets: new Set(records.flatMap((r) => r.datasetVersions ?? []).map((p) => p.dataset)),
    runsByVersion,
    experiments: new Set(records.map((r) => r.id)),
  };
}

/**
 * Only what the tag's runs used: the versions (and gates) of the datasets they were pinned to, and
 * the models with a version or a promotion made from one of their runs.
 */
export function extrasOfTag(records: Pick<Listed, 'id' | 'datasetVersions'>[], extras: ReportExtras): ReportExtras {
  const used = usedByRuns(records);
  return {
    versions: extras.versions.filter((v) => used.datasets.has(v.dataset)),
    gates: extras.gates.filter((g) => used.datasets.has(g.dataset)),
    models: extras.models.filter(
      (m) =>
        m.versions.some((v) => used.experiments.has(v.experiment_id)) ||
        m.promotions.some((p) => used.experiments.has(p.experiment_id)),
    ),
  };
}

function dataSection(extras: ReportExtras, runsByVersion: Map<string, number>): string {
  if (extras.versions.length === 0)
    return `<h2>Data</h2>\n<p id="no-data">This tag's runs used no dataset versions.</p>`;
  const versions = extras.versions
    .map(
      (v) =>
        `<tr><td>${escape(v.dataset)}@${v.version}</td><td class="${v.status}">${v.status}</td><td>${v.arrivedShards}/${v.expectedShards}</td><td>${v.records ?? '-'}</td><td>${escape(v.sealReason ?? '-')}</td><td>${escape(v.decidedAt ?? '-')}</td><td>${runsByVersion.get(`${v.dataset}@${v.version}`) ?? 0}</td></tr>`,
    )
    .join('\n');
  const gates = extras.gates
    .map(
      (g) =>
        `<tr><td>${g.day}</td><td>${escape(g.dataset)}</td><td>${escape(g.gate)}</td><td>${g.checked}</td><td>${percent(g.passRate)}</td><td>${
          Object.entries(g.failures)
            .map(([code, n]) => `<code>${escape(code)}</code>×${n}`)
            .join(', ') || '-'
        }</td></tr>`,
    )
    .join('\n');
  return `<h2>Data</h2>
<p>The datasets this tag's runs were pinned to, every version of each; "runs" counts this tag's runs on it.</p>
<table id="dataset-versions"><tr><th>version</th><th>status</th><th>shards</th><th>records</th><th>sealed by</th><th>decided</th><th>runs</th></tr>
${versions}
</table>
<h3>Gate pass rates by day</h3>
<table id="gates"><tr><th>day</th><th>dataset</th><th>gate</th><th>checked</th><th>pass rate</th><th>failure codes</th></tr>
${gates}
</table>`;
}

function modelsSection(extras: ReportExtras): string {
  if (extras.models.length === 0)
    return `<h2>Models</h2>\n<p id="no-models">No model was made from this tag's runs.</p>`;
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

/** How many runs' GPU charts the report draws (the tag's newest with telemetry). */
export const REPORT_TELEMETRY_RUNS = 30;

const CHART_W = 420;
const CHART_H = 110;
const CHART_PAD = 28;
/** One colour per GPU of a run (a run of more GPUs repeats them; the legend names each). */
const GPU_COLOURS = ['#0969da', '#1a7f37', '#bc4c00', '#8250df', '#cf222e', '#1b7c83', '#9a6700', '#57606a'];

/**
 * One inline SVG chart of a run's GPUs over time: a line per GPU of one series field, drawn
 * server-side (no script), with the axis' top value and the run's span as labels.
 */
export function seriesChartSvg(
  id: string,
  series: GpuSeries[],
  pick: (point: SeriesPoint) => number | null,
  label: { title: string; unit: string; max?: number },
): string {
  const values = series.flatMap((s) => s.points.map(pick)).filter((v): v is number => v !== null);
  const top = label.max ?? Math.max(1, ...values);
  const end = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p.seconds)));
  const x = (seconds: number) => (CHART_PAD + ((CHART_W - 2 * CHART_PAD) * seconds) / end).toFixed(1);
  const y = (value: number) => (CHART_H - CHART_PAD + (-(CHART_H - 2 * CHART_PAD) * value) / top).toFixed(1);
  const lines = series
    .map((s, i) => {
      const points = s.points
        .filter((p) => pick(p) !== null)
        .map((p) => `${x(p.seconds)},${y(pick(p)!)}`)
        .join(' ');
      const colour = GPU_COLOURS[i % GPU_COLOURS.length]!;
      return `<polyline class="gpu-line" data-gpu="${s.index}" fill="none" stroke="${colour}" stroke-width="1.5" points="${points}"><title>GPU ${s.index}</title></polyline>`;
    })
    .join('');
  const legend = series
    .map(
      (s, i) =>
        `<text x="${CHART_W - CHART_PAD - 48 * (series.length - i)}" y="12" font-size="10" fill="${GPU_COLOURS[i % GPU_COLOURS.length]}">GPU ${s.index}</text>`,
    )
    .join('');
  return `<svg id="${escape(id)}" class="gpu-chart" width="${CHART_W}" height="${CHART_H}" role="img" aria-label="${escape(label.title)}">
<text x="4" y="12" font-size="10">${escape(label.title)}</text>${legend}
<line x1="${CHART_PAD}" y1="${CHART_H - CHART_PAD}" x2="${CHART_W - CHART_PAD}" y2="${CHART_H - CHART_PAD}" stroke="#888"/>
<line x1="${CHART_PAD}" y1="${CHART_PAD}" x2="${CHART_PAD}" y2="${CHART_H - CHART_PAD}" stroke="#888"/>
<text x="2" y="${CHART_PAD + 4}" font-size="9">${Math.round(top)}${escape(label.unit)}</text>
<text x="${CHART_W - CHART_PAD - 20}" y="${CHART_H - 8}" font-size="9">${Math.round(end)} s</text>
${lines}</svg>`;
}

/** Each run's GPU utilization and memory over its training, newest first (runs without telemetry left out). */
function telemetrySection(runs: RunTelemetryRow[]): string {
  if (runs.length === 0)
    return `<h2>GPUs</h2>\n<p id="no-gpu-telemetry">No run of this tag has GPU telemetry (CPU slots, or no nvidia-smi).</p>`;
  const charts = runs
    .filter((run) => run.gpuTelemetry.available)
    .map((run) => {
      const telemetry = run.gpuTelemetry;
      if (!telemetry.available) return '';
      const memoryMax = Math.max(1, ...telemetry.gpus.map((g) => g.memoryMaxMb ?? 0));
      const summary = telemetry.gpus
        .map(
          (g) => `GPU ${g.index}: util mean ${g.utilizationMeanPercent ?? '-'}%, mem max ${g.memoryMaxMb ?? '-'} MiB`,
        )
        .join('; ');
      return `<div class="gpu-run" data-experiment="${escape(run.id)}"><p><code>${escape(run.id)}</code> ${escape(run.hypothesis)}<br><small>${escape(summary)}</small></p>
${seriesChartSvg(`util-${run.id}`, telemetry.series, (p) => p.utilizationPercent, { title: 'GPU utilization', unit: '%', max: 100 })}
${seriesChartSvg(`mem-${run.id}`, telemetry.series, (p) => p.memoryUsedMb, { title: 'GPU memory used', unit: ' MiB', max: memoryMax })}</div>`;
    })
    .join('\n');
  return `<h2>GPUs</h2>
<p>GPU utilization and memory of the tag's newest ${runs.length} run(s) with telemetry, as the worker sampled them (<code>expctl show ID</code> prints the summary).</p>
<div id="gpu-telemetry">
${charts}
</div>`;
}

/** How many runs the leaderboard lists. */
export const LEADERBOARD_ROWS = 20;

/** The chart's vertical axis: its range, and the baseline (the first kept run) with whether it lies off it. */
export interface ChartAxis {
  lo: number;
  hi: number;
  baseline: number | null;
  baselineClipped: boolean;
}

/**
 * The axis that shows the improvements: it spans the kept runs after the first. The baseline (the
 * first kept run) joins the range unless it lies further from them than their own spread, where it
 * would flatten every later improvement; it is then drawn at the edge, marked, as is any other run
 * off the axis. With fewer than two improvements the axis spans every metric.
 */
export function chartAxis(
  points: { y: number | null; kind: string }[],
  direction: 'minimize' | 'maximize',
): ChartAxis | null {
  const ys = points.filter((p) => p.y !== null).map((p) => p.y!);
  if (ys.length === 0) return null;
  const kept = points.filter((p) => p.kind === 'keep' && p.y !== null).map((p) => p.y!);
  const baseline = kept[0] ?? null;
  const improvements = kept.slice(1);
  // The improvement nearest the baseline (with fewer than two there is nothing to clip for).
  const nearest = direction === 'minimize' ? Math.max(...improvements) : Math.min(...improvements);
  const spread = Math.max(...improvements) - Math.min(...improvements);
  const clip = baseline !== null && improvements.length >= 2 && spread > 0 && Math.abs(baseline - nearest) > spread;
  const span = clip ? improvements : ys;
  const [low, high] = [Math.min(...span), Math.max(...span)];
  const range = high > low ? high - low : 2;
  const middle = (low + high) / 2;
  // A little room on each side; when clipped, half the range more on the worse side, for the
  // discards near the best.
  const worse = clip ? 0.5 : 0.08;
  const [below, above] = direction === 'minimize' ? [0.08, worse] : [worse, 0.08];
  const lo = middle - range / 2 - range * below;
  const hi = middle + range / 2 + range * above;
  return { lo, hi, baseline, baselineClipped: clip };
}

/**
 * One self-contained HTML page for a tag: progression chart (kept runs as a staircase, discarded
 * and crashed runs as dots), leaderboard and category table. No external assets; the chart is
 * drawn in the browser from the data embedded in the page.
 */
export function tagReportHtml(
  tag: string,
  records: Listed[],
  fleet?: ReportExtras,
  telemetry?: RunTelemetryRow[],
): string {
  const summary = summarize(tag, records);
  const extras = fleet ? extrasOfTag(records, fleet) : undefined;
  const { runsByVersion } = usedByRuns(records);
  const runs = resultRuns(records);
  const direction = runs[0]?.metricDirection ?? 'minimize';
  const metricName = runs[0]?.metricName ?? DEFAULT_METRIC.name;
  const points = runs.map((r, i) => {
    const kind = resultKind(r.status as TerminalStatus, r.decision);
    return { x: i + 1, y: kind === 'crash' ? null : r.metric, kind, id: r.id, label: scrubText(r.hypothesis) };
  });
  const ranked = runs
    .filter((r) => r.metric !== null && r.status === 'completed')
    .sort((a, b) => (direction === 'minimize' ? a.metric! - b.metric! : b.metric! - a.metric!));
  const leaderboard = ranked.slice(0, LEADERBOARD_ROWS);
  const leftOut = ranked.length - leaderboard.length;
  const leaderboardNote =
    leftOut > 0
      ? `the best ${leaderboard.length} of ${ranked.length} runs with a metric; ${leftOut} more not shown (<code>expctl history --tag ${escape(tag)}</code> lists every run)`
      : `all ${ranked.length} runs with a metric`;
  const axis = chartAxis(points, direction);
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
<span id="slot-hours">${slotHoursText(summary, 2)}</span></p>
<svg id="progression" width="900" height="360" role="img" aria-label="metric progression"></svg>
<h2>Leaderboard</h2>
<p id="leaderboard-note" data-shown="${leaderboard.length}" data-left-out="${leftOut}">${leaderboardNote}</p>
<table id="leaderboard"><tr><th>#</th><th>${escape(metricName)}</th><th>decision</th><th>commit</th><th>category</th><th>hypothesis</th><th>experiment</th></tr>
${rows}
</table>
<h2>Categories</h2>
<table id="categories"><tr><th>category</th><th>runs</th><th>kept</th><th>keep rate</th></tr>
${categoryRows}
</table>
${extras ? dataSection(extras, runsByVersion) : ''}
${extras ? modelsSection(extras) : ''}
${telemetry ? telemetrySection(telemetry) : ''}
<script id="data" type="application/json">${JSON.stringify({ points, direction, axis }).replace(/</g, '\\u003c')}</script>
<script>
(function () {
  var data = JSON.parse(document.getElementById('data').textContent);
  var svg = document.getElementById('progression');
  var ns = 'http://www.w3.org/2000/svg', W = 900, H = 360, P = 48;
  if (data.axis === null) return;
  var lo = data.axis.lo, hi = data.axis.hi;
  var n = data.points.length;
  function X(x) { return P + (W - 2 * P) * (n === 1 ? 0.5 : (x - 1) / (n - 1)); }
  function off(y) { return y < lo || y > hi; }
  // A value off the axis is drawn at its edge (and marked as such).
  function Y(y) { var c = Math.min(hi, Math.max(lo, y)); return H - P - (H - 2 * P) * (c - lo) / (hi - lo); }
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
  if (data.axis.baseline !== null) {
    var b = data.axis.baseline, by = Y(b);
    el('line', { id: 'baseline', x1: P, y1: by, x2: W - P, y2: by, stroke: '#888', 'stroke-dasharray': '4 4', 'data-clipped': String(data.axis.baselineClipped) });
    var bt = el('text', { id: 'baseline-label', x: P + 4, y: by + (by < H / 2 ? 14 : -4), 'font-size': 11, fill: '#555' });
    bt.textContent = 'baseline ' + b.toFixed(6) + (data.axis.baselineClipped ? ' (off the axis, which shows the improvements)' : '');
  }
  data.points.forEach(function (p) {
    var y = p.y === null ? H - P / 2 : Y(p.y); // crashes have no metric: a row of dots under the axis
    var clipped = p.y !== null && off(p.y);
    var attrs = { cx: X(p.x), cy: y, r: p.kind === 'keep' ? 5 : 4, class: p.kind };
    if (clipped) { attrs['data-clipped'] = 'true'; attrs.stroke = '#000'; attrs['stroke-dasharray'] = '2 1'; }
    var c = el('circle', attrs);
    var title = document.createElementNS(ns, 'title'); title.textContent = p.id + ': ' + p.label + (p.y === null ? ' (crash)' : ' = ' + p.y + (clipped ? ' (off the axis)' : '')); c.appendChild(title);
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
