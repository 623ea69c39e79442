import { roundFigure } from '../domain/metrics.js';

/**
 * The one JSON style of every `--json` output, applied where the CLI prints (printJson): the run
 * contract's snake_case field names at every depth, and figures rounded as the metric is. Internal
 * types keep their camelCase; only what leaves the process is converted.
 */

/** A camelCase identifier: only such keys are field names of expctl's own to convert. */
const CAMEL_IDENTIFIER = /^[a-z][a-zA-Z0-9]*$/;

/**
 * `metricName` → `metric_name`, `peakVramMb` → `peak_vram_mb`. Any other key is left as it is:
 * environment variable names (`HF_TOKEN`), file names (`Cargo.lock`), gate codes with dots.
 */
export function snakeCase(key: string): string {
  if (!CAMEL_IDENTIFIER.test(key)) return key;
  return key
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

/**
 * Fields whose object is a map keyed by names the user or the fleet chose (metric names, host
 * names, environment variables, lockfiles, aliases, dataset columns): those keys stay as they
 * are; the values inside are converted as usual.
 */
const KEYED_BY_NAME = new Set([
  'metrics',
  'env',
  'secrets',
  'variables',
  'software',
  'lockfiles',
  'hosts',
  'health',
  'refusals',
  'usage',
  'failures',
  'aliases',
  'by_status',
  'schema',
  'omitted',
  'shards',
]);

/** Fields that hold the user's own JSON (a training config): kept exactly as given, at every depth. */
const AS_GIVEN = new Set(['resolved_config']);

/** Fields that are figures of a metric: rounded as the metric is printed. */
const FIGURES = new Set(['metric', 'best', 'delta']);

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

function convertField(key: string, value: unknown): unknown {
  if (AS_GIVEN.has(key)) return value;
  if (FIGURES.has(key) && typeof value === 'number') return roundFigure(value);
  if (KEYED_BY_NAME.has(key) && isPlainObject(value))
    return Object.fromEntries(Object.entries(value).map(([name, inner]) => [name, toJsonStyle(inner)]));
  return toJsonStyle(value);
}

/** `value` in the output style: snake_case keys at every depth, figures rounded. */
export function toJsonStyle(value: unknown): unknown {
  if (Array.isArray(value)) return value.map((item) => toJsonStyle(item));
  if (!isPlainObject(value)) return value;
  return Object.fromEntries(
    Object.entries(value).map(([key, inner]) => {
      const name = snakeCase(key);
      return [name, convertField(name, inner)];
    }),
  );
}
