/** Durations as users type them (30s, 30m, 2h, 1d, 500ms): one parser for every flag that takes one. Pure. */

/** A duration such as "30m", "90s", "2h", "1d" or "500ms", in milliseconds. */
export function parseDuration(raw: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(raw);
  if (!match) throw new Error(`expected a duration such as 30s, 30m, 2h or 1d, got ${JSON.stringify(raw)}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  const ms = Number(match[1]) * unit;
  if (!(ms > 0) || !Number.isSafeInteger(ms)) throw new Error(`duration ${JSON.stringify(raw)} must be greater than 0`);
  return ms;
}

/** Milliseconds as the largest whole unit: 1800000 → "30m". */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const)
    if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}
