import type { RunTimings } from './experiment.js';
import type { Metrics } from './metrics.js';

/**
 * Where a run's time went, from what the worker observed and what the script reported. Pure.
 * The script's own figures win (startup_seconds, training_seconds, eval_seconds, total_seconds);
 * where it prints none, startup runs from the process start to its first progress line and
 * evaluation from its last progress line to its exit (only for a run that printed its `---` block:
 * after a crash that span is not an evaluation).
 */
export interface ObservedTimes {
  setup: { seconds: number; cached: boolean } | null;
  /** Epoch milliseconds; null when the training process never started. */
  processStartMs: number | null;
  processEndMs: number | null;
  firstProgressMs: number | null;
  lastProgressMs: number | null;
}

const roundTenth = (seconds: number) => Math.round(seconds * 10) / 10;

function reported(metrics: Metrics | null, key: string): number | null {
  const value = metrics?.[key];
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

function span(fromMs: number | null, toMs: number | null): number | null {
  return fromMs === null || toMs === null || toMs < fromMs ? null : roundTenth((toMs - fromMs) / 1000);
}

export function computeTimings(observed: ObservedTimes, metrics: Metrics | null): RunTimings {
  return {
    setupSeconds: observed.setup ? roundTenth(observed.setup.seconds) : null,
    setupCached: observed.setup ? observed.setup.cached : null,
    startupSeconds: reported(metrics, 'startup_seconds') ?? span(observed.processStartMs, observed.firstProgressMs),
    trainingSeconds: reported(metrics, 'training_seconds'),
    evaluationSeconds:
      reported(metrics, 'eval_seconds') ?? (metrics ? span(observed.lastProgressMs, observed.processEndMs) : null),
    totalSeconds: reported(metrics, 'total_seconds'),
    processSeconds: span(observed.processStartMs, observed.processEndMs),
  };
}
