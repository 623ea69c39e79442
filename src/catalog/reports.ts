import type { TerminalStatus } from '../domain/experiment.js';
import { countOutcomes, isCounted, outcomeRates, resultKind, type OutcomeCounts } from '../domain/outcome.js';
import { roundFigure } from '../domain/metrics.js';
import type { RunSummary } from '../domain/strategy.js';
import type { ExperimentRecord } from './record.js';

/** Reports over catalog records. Pure: the CLI prints them, tests compare them. */

type Listed = Omit<ExperimentRecord, 'events' | 'artifacts'>;

/**
 * Runs that count for a tag's results, in decision order: those the tag decided whose kind
 * (outcome.ts) is keep, discard or crash. Refused, infrastructure and canceled runs are left out.
 */
export function resultRuns(records: Listed[]): Listed[] {
  return records
    .filter((r) => r.sequence !== null && isCounted(resultKind(r.status as TerminalStatus, r.decision)))
    .sort((a, b) => a.sequence! - b.sequence!);
}

export function toRunSummary(r: Listed): RunSummary {
  return {
    id: r.id,
    category: r.category,
    hypothesis: r.hypothesis,
    status: r.status,
    decision: r.decision,
    metric: r.metric,
    nearMiss: r.nearMiss,
    delta: r.delta,
  };
}

export interface BestKept {
  id: string;
  metric: number;
  commit: string;
  acceleratorClass: string | null;
}

/**
 * The best kept run: the minimum (or maximum, for a maximized metric) kept metric, never merely
 * the latest keep. Of equal metrics the later keep wins (a kept simplification is the new head),
 * as in the tag's own state. Overall and per accelerator class.
 */
export function bestKept(records: Listed[]): { overall: Listed | null; byClass: Record<string, Listed> } {
  const kept = records
    .filter((r) => r.status === 'completed' && r.decision === 'keep' && r.metric !== null)
    .sort((a, b) => (a.sequence ?? Infinity) - (b.sequence ?? Infinity));
  const atLeastAsGood = (a: Listed, b: Listed) =>
    a.metricDirection === 'maximize' ? a.metric! >= b.metric! : a.metric! <= b.metric!;
  let overall: Listed | null = null;
  const byClass: Record<string, Listed> = {};
  for (const r of kept) {
    if (!overall || atLeastAsGood(r, overall)) overall = r;
    const group = r.acceleratorClass ?? 'unknown';
    const current = byClass[group];
    if (!current || atLeastAsGood(r, current)) byClass[group] = r;
  }
  return { overall, byClass };
}

const asBest = (r: Listed): BestKept => ({
  id: r.id,
  metric: r.metric!,
  commit: r.commit,
  acceleratorClass: r.acceleratorClass,
});

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface TagSummary extends OutcomeCounts {
  tag: string;
  runs: number;
  /** Over runs (kept + discarded + crashed), as defined once in outcome.ts. */
  keepRate: number;
  crashRate: number;
  best: BestKept | null;
  bestByClass: Record<string, BestKept>;
  categories: { category: string; runs: number; kept: number; keepRate: number }[];
  progression: { id: string; metric: number; commit: string; at: string | null }[];
  /** Slot-hours of runs on GPU classes; CPU slots never count here. */
  gpuHours: number;
  /** Slot-hours of runs on CPU slots. */
  cpu_slot_hours: number;
  queueWaitSeconds: { median: number | null; max: number | null };
  byStatus: Record<string, number>;
}

/** The accelerator class of CPU slots. */
const CPU_CLASS = 'cpu';

/** Hours the runs of the classes `counted` accepts spent on their slots (a run never placed has none). */
function slotHours(records: Listed[], counted: (acceleratorClass: string) => boolean): number {
  const seconds = records
    .filter((r) => r.acceleratorClass !== null && counted(r.acceleratorClass))
    .reduce((sum, r) => sum + (r.slotSeconds ?? 0), 0);
  return seconds / 3600;
}

/** Slot time as reports print it: GPU-hours only for GPU runs, CPU-slot hours for CPU runs. */
export function slotHoursText(summary: Pick<TagSummary, 'gpuHours' | 'cpu_slot_hours'>, digits = 3): string {
  const parts = [
    ...(summary.gpuHours > 0 ? [`${summary.gpuHours.toFixed(digits)} GPU-hours`] : []),
    ...(summary.cpu_slot_hours > 0 ? [`${summary.cpu_slot_hours.toFixed(digits)} CPU-slot hours`] : []),
  ];
  return parts.join(', ') || 'no slot time yet';
}

export function summarize(tag: string, records: Listed[]): TagSummary {
  const runs = resultRuns(records);
  const counts = countOutcomes(records.filter((r) => r.sequence !== null));
  const rates = outcomeRates(counts);
  const byStatus: Record<string, number> = {};
  for (const r of records) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  const categories = [...new Set(runs.map((r) => r.category))].sort().map((category) => {
    const inCategory = countOutcomes(runs.filter((r) => r.category === category));
    const rate = outcomeRates(inCategory);
    return { category, runs: rate.runs, kept: inCategory.kept, keepRate: rate.keepRate };
  });
  const best = bestKept(runs);
  const waits = records.filter((r) => r.queuedMs !== null).map((r) => r.queuedMs! / 1000);
  return {
    tag,
    runs: rates.runs,
    kept: counts.kept,
    discarded: counts.discarded,
    crashed: counts.crashed,
    refused: counts.refused,
    infrastructure: counts.infrastructure,
    canceled: counts.canceled,
    keepRate: rates.keepRate,
    crashRate: rates.crashRate,
    best: best.overall ? asBest(best.overall) : null,
    bestByClass: Object.fromEntries(Object.entries(best.byClass).map(([group, r]) => [group, asBest(r)])),
    categories,
    progression: runs
      .filter((r) => r.decision === 'keep' && r.status === 'completed')
      .map((r) => ({ id: r.id, metric: r.metric!, commit: r.commit, at: r.endedAt })),
    gpuHours: slotHours(records, (accelerator) => accelerator !== CPU_CLASS),
    cpu_slot_hours: slotHours(records, (accelerator) => accelerator === CPU_CLASS),
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
    metric: {
      a: a.metric,
      b: b.metric,
      delta: a.metric !== null && b.metric !== null ? roundFigure(b.metric - a.metric) : null,
    },
    metrics: keys.map((key) => {
      const va = a.metrics?.[key] ?? null;
      const vb = b.metrics?.[key] ?? null;
      return {
        key,
        a: va,
        b: vb,
        delta: typeof va === 'number' && typeof vb === 'number' ? roundFigure(vb - va) : null,
      };
    }),
    config: configKeys
      .filter((k) => JSON.stringify(ca[k]) !== JSON.stringify(cb[k]))
      .map((key) => ({ key, a: ca[key] ?? null, b: cb[key] ?? null })),
    commits: { a: a.commit, b: b.commit },
  };
}
