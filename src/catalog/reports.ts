import type { RunSummary } from '../domain/strategy.js';
import type { ExperimentRecord } from './record.js';

/** Reports over catalog records. Pure: the CLI prints them, tests compare them. */

type Listed = Omit<ExperimentRecord, 'events' | 'artifacts'>;

/** Runs that count for a tag's results: decided by the tag, excluding refused and canceled ones. */
export function resultRuns(records: Listed[]): Listed[] {
  return records
    .filter((r) => r.sequence !== null && r.status !== 'validation_failed' && r.status !== 'canceled')
    .sort((a, b) => a.sequence! - b.sequence!);
}

export function toRunSummary(r: Listed): RunSummary {
  return { id: r.id, category: r.category, hypothesis: r.hypothesis, status: r.status, decision: r.decision, metric: r.metric, nearMiss: r.nearMiss, delta: r.delta };
}

/** autoresearch's results.tsv, byte for byte: commit, val_bpb, memory_gb, status, description. */
export function resultsTsv(records: Listed[]): string {
  const lines = ['commit\tval_bpb\tmemory_gb\tstatus\tdescription'];
  for (const r of resultRuns(records)) {
    const ok = r.status === 'completed' && r.metric !== null;
    const memoryGb = ok && r.peakVramMb !== null ? r.peakVramMb / 1024 : 0;
    const description = (r.description || r.hypothesis).replace(/[\t\r\n]+/g, ' ');
    lines.push([r.commit.slice(0, 7), (ok ? r.metric! : 0).toFixed(6), memoryGb.toFixed(1), ok ? r.decision : 'crash', description].join('\t'));
  }
  return `${lines.join('\n')}\n`;
}

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface TagSummary {
  tag: string;
  runs: number;
  kept: number;
  discarded: number;
  crashed: number;
  canceled: number;
  refused: number;
  keepRate: number;
  crashRate: number;
  best: { id: string; metric: number; commit: string } | null;
  categories: { category: string; runs: number; kept: number; keepRate: number }[];
  progression: { id: string; metric: number; commit: string; at: string | null }[];
  gpuHours: number;
  queueWaitSeconds: { median: number | null; max: number | null };
  byStatus: Record<string, number>;
}

export function summarize(tag: string, records: Listed[]): TagSummary {
  const runs = resultRuns(records);
  const kept = runs.filter((r) => r.decision === 'keep');
  const crashed = runs.filter((r) => r.status !== 'completed');
  const byStatus: Record<string, number> = {};
  for (const r of records) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  const categories = [...new Set(runs.map((r) => r.category))].sort().map((category) => {
    const inCategory = runs.filter((r) => r.category === category);
    const k = inCategory.filter((r) => r.decision === 'keep').length;
    return { category, runs: inCategory.length, kept: k, keepRate: k / inCategory.length };
  });
  const last = kept.at(-1);
  const waits = records.filter((r) => r.queuedMs !== null).map((r) => r.queuedMs! / 1000);
  return {
    tag,
    runs: runs.length,
    kept: kept.length,
    discarded: runs.filter((r) => r.decision === 'discard').length,
    crashed: crashed.length,
    canceled: byStatus.canceled ?? 0,
    refused: byStatus.validation_failed ?? 0,
    keepRate: runs.length ? kept.length / runs.length : 0,
    crashRate: runs.length ? crashed.length / runs.length : 0,
    best: last ? { id: last.id, metric: last.metric!, commit: last.commit } : null,
    categories,
    progression: kept.map((r) => ({ id: r.id, metric: r.metric!, commit: r.commit, at: r.endedAt })),
    gpuHours: records.reduce((sum, r) => sum + (r.trainingSeconds ?? 0), 0) / 3600,
    queueWaitSeconds: { median: median(waits), max: waits.length ? Math.max(...waits) : null },
    byStatus,
  };
}

function flatten(value: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out[prefix] = value;
  return out;
}

export interface RecordDiff {
  a: string;
  b: string;
  metricName: string;
  metric: { a: number | null; b: number | null; delta: number | null };
  metrics: { key: string; a: number | string | null; b: number | string | null; delta: number | null }[];
  config: { key: string; a: unknown; b: unknown }[];
  commits: { a: string; b: string };
}

/** What differs between two runs: metrics, every reported value, and the resolved config. */
export function diffRecords(a: ExperimentRecord, b: ExperimentRecord): RecordDiff {
  const keys = [...new Set([...Object.keys(a.metrics ?? {}), ...Object.keys(b.metrics ?? {})])].sort();
  const ca = flatten(a.resolvedConfig ?? {});
  const cb = flatten(b.resolvedConfig ?? {});
  const configKeys = [...new Set([...Object.keys(ca), ...Object.keys(cb)])].sort();
  return {
    a: a.id,
    b: b.id,
    metricName: a.metricName,
    metric: { a: a.metric, b: b.metric, delta: a.metric !== null && b.metric !== null ? b.metric - a.metric : null },
    metrics: keys.map((key) => {
      const va = a.metrics?.[key] ?? null;
      const vb = b.metrics?.[key] ?? null;
      return { key, a: va, b: vb, delta: typeof va === 'number' && typeof vb === 'number' ? vb - va : null };
    }),
    config: configKeys.filter((k) => JSON.stringify(ca[k]) !== JSON.stringify(cb[k])).map((key) => ({ key, a: ca[key] ?? null, b: cb[key] ?? null })),
    commits: { a: a.commit, b: b.commit },
  };
}
