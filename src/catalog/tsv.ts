import type { ExperimentRecord } from './record.js';
import { resultRuns } from './reports.js';
import { resultKind } from '../domain/outcome.js';
import { DEFAULT_METRIC } from '../domain/decision.js';
import type { TerminalStatus } from '../domain/experiment.js';

/**
 * autoresearch's results.tsv, byte for byte for its five columns, readable by Python's csv module
 * and pandas whatever a description holds. Pure.
 */

type Listed = Omit<ExperimentRecord, 'events' | 'artifacts'>;

/**
 * `x` to `digits` decimals exactly as Python's f"{x:.{digits}f}": the exact binary value is
 * rounded, an exact tie to even (45312 MB / 1024 = 44.25 → "44.2"; JavaScript's toFixed gives 44.3).
 */
export function formatFixed(x: number, digits: number): string {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf';
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const negative = bits >> 63n === 1n;
  const exponentBits = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  // x = mantissa * 2^exponent exactly
  const mantissa = exponentBits === 0 ? fraction : fraction | (1n << 52n);
  const exponent = (exponentBits === 0 ? 1 : exponentBits) - 1075;
  const scale = 10n ** BigInt(digits);
  let scaled: bigint;
  if (exponent >= 0) {
    scaled = mantissa * scale * (1n << BigInt(exponent));
  } else {
    const numerator = mantissa * scale;
    const denominator = 1n << BigInt(-exponent);
    scaled = numerator / denominator;
    const twice = 2n * (numerator % denominator);
    if (twice > denominator || (twice === denominator && scaled % 2n === 1n)) scaled++;
  }
  const text = scaled.toString().padStart(digits + 1, '0');
  const body = digits ? `${text.slice(0, -digits)}.${text.slice(-digits)}` : text;
  return negative ? `-${body}` : body;
}

/**
 * A field as Python's csv.writer writes it with delimiter "\t" and QUOTE_MINIMAL: quoted when it
 * holds the delimiter, a quote or a line break, with quotes doubled.
 */
export function tsvField(text: string): string {
  return /[\t"\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The five columns of autoresearch's results.tsv; `metric` is headed by the tag's metric name. */
export const DEFAULT_COLUMNS = ['commit', 'metric', 'memory_gb', 'status', 'description'] as const;

/**
 * Parses `--columns`: a comma-separated list of `commit`, `metric` (or the metric's own name),
 * `memory_gb`, `status`, `description`, `default` (the five above) and any other key of the
 * runs' `---` blocks (score, sharpe, …). Example: `default,score,sharpe`.
 */
export function parseColumns(spec: string | undefined): string[] {
  if (spec === undefined) return [...DEFAULT_COLUMNS];
  const names = spec.split(',').map((name) => name.trim());
  if (names.some((name) => name === '')) throw new Error(`--columns "${spec}" has an empty column name`);
  const columns = names.flatMap((name) => (name === 'default' ? [...DEFAULT_COLUMNS] : [name]));
  const repeated = columns.find((name, i) => columns.indexOf(name) !== i);
  if (repeated) throw new Error(`--columns names "${repeated}" twice`);
  return columns;
}

function blockValue(value: number | string | undefined): string {
  if (value === undefined) return '';
  return typeof value === 'number' ? String(value) : value;
}

/**
 * results.tsv of a tag. Rows: the runs the tag decided that count (keep, discard, crash, in decision
 * order); refused, infrastructure and canceled runs are not rows, as they are no idea being tried.
 * A crash has metric 0.000000 and memory 0.0, like autoresearch's own crash rows.
 */
export function resultsTsv(records: Listed[], columns: readonly string[] = DEFAULT_COLUMNS): string {
  const runs = resultRuns(records);
  const metricName = runs[0]?.metricName ?? DEFAULT_METRIC.name;
  const isMetric = (column: string) => column === 'metric' || column === metricName;
  const header = columns.map((c) => (isMetric(c) ? metricName : c));
  const lines = [header.map(tsvField).join('\t')];
  for (const r of runs) {
    const kind = resultKind(r.status as TerminalStatus, r.decision);
    const ok = kind !== 'crash' && r.metric !== null;
    const cell = (column: string): string => {
      if (isMetric(column)) return formatFixed(ok ? r.metric! : 0, 6);
      switch (column) {
        case 'commit':
          return r.commit.slice(0, 7);
        case 'memory_gb':
          return formatFixed(ok && r.peakVramMb !== null ? r.peakVramMb / 1024 : 0, 1);
        case 'status':
          return kind;
        case 'description':
          return r.description || r.hypothesis;
        default:
          return blockValue(r.metrics?.[column]);
      }
    };
    lines.push(columns.map((c) => tsvField(cell(c))).join('\t'));
  }
  return `${lines.join('\n')}\n`;
}
