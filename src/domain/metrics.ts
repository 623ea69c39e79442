/**
 * The training output contract (autoresearch format): progress lines while training, then a
 * line `---` followed by `key: value` lines. Pure functions, shared by the worker and tests.
 */

export type Metrics = Record<string, number | string>;

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
  loss?: number;
  line: string;
}

/** Reads step/total and loss out of a progress line such as `step 00012/00100 | loss 2.3456 | ...`. */
export function parseProgressLine(line: string): Progress {
  const progress: Progress = { line: line.trim().slice(0, 200) };
  const step = /\bstep[\s:=]*(\d+)(?:\s*\/\s*(\d+))?/i.exec(line);
  if (step) {
    progress.step = Number(step[1]);
    if (step[2]) progress.totalSteps = Number(step[2]);
  }
  const loss = /\bloss[\s:=]*(-?\d+(?:\.\d+)?(?:e-?\d+)?)/i.exec(line);
  if (loss) progress.loss = Number(loss[1]);
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
  const last = lines.map((l) => l.trim()).filter((l) => l !== '').at(-1);
  return last === undefined ? undefined : { line: last.slice(0, 200) };
}

const OOM_PATTERNS = [/CUDA out of memory/i, /OutOfMemoryError/, /CUBLAS_STATUS_ALLOC_FAILED/, /out of memory/i];

export function looksLikeOom(logTail: string): boolean {
  return OOM_PATTERNS.some((pattern) => pattern.test(logTail));
}
