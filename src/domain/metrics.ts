/**
 * The training output contract (autoresearch format): progress lines while training, then a
 * line `---` followed by `key: value` lines. Pure functions, shared by the worker and tests.
 */

export type Metrics = Record<string, number | string>;

/** Decimals a metric is printed with (autoresearch prints `val_bpb: 0.997900`). */
export const FIGURE_DECIMALS = 6;

/**
 * A figure derived from metrics (a delta, a best, a difference) rounded as the metric itself is:
 * a subtraction of two 6-decimal metrics must read 0.001808, not 0.0018080000000000318.
 */
export function roundFigure(value: number): number {
  if (!Number.isFinite(value)) return value;
  const rounded = Number(value.toFixed(FIGURE_DECIMALS));
  return Object.is(rounded, -0) ? 0 : rounded;
}

/** Parses the last `---` block of a log. Returns undefined when the run printed none. */
export function parseSummaryBlock(log: string): Metrics | undefined {
  const lines = log.split(/\r?\n/);
  let start = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i]!.trim() === '---') {
      start = i;
      break;
    }
  }
  if (start < 0) return undefined;
  const metrics: Metrics = {};
  for (const line of lines.slice(start + 1)) {
    const match = /^\s*([A-Za-z_][\w.-]*)\s*:\s*(.*?)\s*$/.exec(line);
    if (!match) continue;
    const [, key, raw] = match as unknown as [string, string, string];
    const value = Number(raw);
    metrics[key] = raw !== '' && Number.isFinite(value) ? value : raw;
  }
  return Object.keys(metrics).length > 0 ? metrics : undefined;
}

export interface Progress {
  step?: number;
  totalSteps?: number;
  /** Share of the training budget done, as the script prints it (`(37.5%)`). */
  percent?: number;
  loss?: number;
  /** Learning-rate multiplier (`lrm`). */
  lrm?: number;
  /** Time of the last step in milliseconds (`dt: 312ms`). */
  dtMs?: number;
  tokPerSec?: number;
  mfuPercent?: number;
  epoch?: number;
  /** Training time left by the script's own count (`remaining: 187s`). */
  remainingSeconds?: number;
  line: string;
}

const NUMBER = String.raw`-?\d+(?:\.\d+)?(?:e[-+]?\d+)?`;

/** `name: value` fields of a progress line; `tok/sec` may carry thousands separators. */
const FIELDS: { key: Exclude<keyof Progress, 'line' | 'step' | 'totalSteps' | 'percent'>; pattern: RegExp }[] = [
  { key: 'loss', pattern: new RegExp(String.raw`\bloss[\s:=]*(${NUMBER})`, 'i') },
  { key: 'lrm', pattern: new RegExp(String.raw`\blrm[\s:=]*(${NUMBER})`, 'i') },
  { key: 'dtMs', pattern: new RegExp(String.raw`\bdt[\s:=]*(${NUMBER})\s*ms\b`, 'i') },
  { key: 'tokPerSec', pattern: /\btok\/sec[\s:=]*(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)/i },
  { key: 'mfuPercent', pattern: new RegExp(String.raw`\bmfu[\s:=]*(${NUMBER})\s*%`, 'i') },
  { key: 'epoch', pattern: /\bepoch\s*[:=]\s*(\d+)/i },
  { key: 'remainingSeconds', pattern: new RegExp(String.raw`\bremaining[\s:=]*(${NUMBER})\s*s\b`, 'i') },
];

/**
 * Reads a progress line: autoresearch's
 * `step 00412 (37.5%) | loss: 3.214077 | lrm: 1.00 | dt: 312ms | tok/sec: 420,117 | mfu: 38.2% | epoch: 1 | remaining: 187s`
 * and the `step 12/100 | loss 2.3` form. Fields the line lacks are left out.
 */
export function parseProgressLine(line: string): Progress {
  const progress: Progress = { line: line.trim().slice(0, 200) };
  const step = /\bstep[\s:=]*(\d+)(?:\s*\/\s*(\d+))?(?:\s*\(\s*(\d+(?:\.\d+)?)\s*%\s*\))?/i.exec(line);
  if (step) {
    progress.step = Number(step[1]);
    if (step[2]) progress.totalSteps = Number(step[2]);
    if (step[3]) progress.percent = Number(step[3]);
  }
  for (const { key, pattern } of FIELDS) {
    const match = pattern.exec(line);
    if (match) progress[key] = Number(match[1]!.replace(/,/g, ''));
  }
  if (progress.percent === undefined && progress.step !== undefined && progress.totalSteps) {
    progress.percent = Math.min(100, (100 * progress.step) / progress.totalSteps);
  }
  return progress;
}

/** The latest progress among the given log lines; lines after a `---` block are not progress. */
export function latestProgress(lines: string[]): Progress | undefined {
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trim();
    if (line === '' || line === '---') continue;
    const progress = parseProgressLine(line);
    if (progress.step !== undefined || progress.loss !== undefined) return progress;
  }
  const last = lines
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .at(-1);
  return last === undefined ? undefined : { line: last.slice(0, 200) };
}
