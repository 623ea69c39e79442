/** Experiment states, results and the CLI's exit codes (BRIEF §2, §4). Pure; safe in workflows. */
import { EXIT_CODES } from './exit-codes.js';
import type { GpuFailure, GpuTelemetry } from './telemetry.js';

export type ActiveStatus =
  | 'submitted'
  | 'validating'
  /** `--wait-for-data`: no version of a dataset it names has passed its gates yet. */
  | 'waiting_for_data'
  | 'queued'
  | 'running'
  | 'evaluating';
export type FailedStatus =
  | 'validation_failed'
  | 'command_failed'
  | 'oom'
  | 'timed_out'
  | 'worker_lost'
  | 'retry_exhausted'
  /** A GPU of the run failed while it trained (outcome.gpuFailure names it); that GPU is drained. */
  | 'gpu_failed'
  /** A dataset it names had no passed version (within `--wait-for-data`'s limit, when given). */
  | 'data_unavailable'
  | 'canceled';
export type TerminalStatus = 'completed' | FailedStatus;
export type ExperimentStatus = ActiveStatus | TerminalStatus;

export const ACTIVE_STATUSES: readonly ActiveStatus[] = [
  'submitted',
  'validating',
  'waiting_for_data',
  'queued',
  'running',
  'evaluating',
];

export const TERMINAL_STATUSES: readonly TerminalStatus[] = [
  'completed',
  'validation_failed',
  'command_failed',
  'oom',
  'timed_out',
  'worker_lost',
  'retry_exhausted',
  'gpu_failed',
  'data_unavailable',
  'canceled',
];

export function isTerminal(status: string): status is TerminalStatus {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

export type Decision = 'keep' | 'discard';
export type GitAction = 'keep_commit' | 'git_reset';

/** The one JSON object `expctl run` prints for an agent. */
export interface ExperimentResult {
  /** Null only when the request was refused before an experiment existed. */
  experiment_id: string | null;
  tag: string;
  status: TerminalStatus;
  decision: Decision | null;
  action: GitAction | null;
  metric_name: string;
  metric: number | null;
  best: number | null;
  delta: number | null;
  near_miss: boolean;
  consecutive_crashes: number;
  should_abort: boolean;
  reason: string;
  gpu: string | null;
  /** A multi-GPU run's every GPU, in topology order, lead (gpu) first; absent for a 1-GPU run. */
  gpus?: string[];
  worker: string | null;
  /** Which keep rule decided (see decision.ts), or null when nothing was decided. */
  rule: string | null;
  /** What to look at though the run ended as it did (e.g. its GPUs stayed idle); absent when none. */
  warnings?: string[];
}

/** Exit code of `expctl run` / `expctl wait` for a terminal state (exit-codes.ts). */
export function exitCodeFor(status: TerminalStatus): number {
  switch (status) {
    case 'completed':
      return EXIT_CODES.decided;
    case 'validation_failed':
      return EXIT_CODES.validation_failed;
    case 'command_failed':
    case 'oom':
    case 'timed_out':
      return EXIT_CODES.run_failed;
    case 'worker_lost':
    case 'retry_exhausted':
    case 'gpu_failed':
    case 'data_unavailable':
      return EXIT_CODES.infrastructure;
    case 'canceled':
      return EXIT_CODES.canceled;
  }
}

/**
 * Where a run's time went. Measured by the worker (setup, process) or read from the script's
 * `---` block (training_seconds, total_seconds, and startup/eval seconds where it prints them).
 */
/** An outcome's fields that say nothing happened beyond the exit (used where a run has no cgroup or setup). */
export const NO_TIMINGS: RunTimings = {
  setupSeconds: null,
  setupCached: null,
  startupSeconds: null,
  trainingSeconds: null,
  evaluationSeconds: null,
  totalSeconds: null,
  processSeconds: null,
};

export interface RunTimings {
  /** Environment setup (venv, `uv sync`, `--setup`); null when there was none. */
  setupSeconds: number | null;
  /** True when setup was skipped because an environment for the same lockfile was ready. */
  setupCached: boolean | null;
  /** From the training process's start to its first progress line (or the script's startup_seconds). */
  startupSeconds: number | null;
  /** The script's own training_seconds (the one figure called training seconds; the record's slotSeconds is the slot's wall time). */
  trainingSeconds: number | null;
  /** From the last progress line to exit (or the script's eval_seconds). */
  evaluationSeconds: number | null;
  /** The script's own total_seconds. */
  totalSeconds: number | null;
  /** Wall time of the training process (startup, training and evaluation), measured by the worker. */
  processSeconds: number | null;
}

/**
 * How a run's processes were held together, strongest first: its own cgroup (v2 or v1), a PID
 * namespace, or only the supervisor's process group (which setsid'd descendants can leave).
 */
export type ContainmentKind = 'cgroup-v2' | 'cgroup-v1' | 'pid-namespace' | 'process-group';

/** One file of a run's artifact directory, as the record keeps it. */
export interface RunArtifact {
  /** Relative to the run's artifact directory. */
  path: string;
  sha256: string;
  bytes: number;
  /** The fleet store's object (absent: not uploaded, or recorded before the store). */
  uri?: string;
}

/** What the train activity reports about the process it supervised. */
export interface TrainingOutcome {
  /** The phase the run ended in: environment setup, or the training process itself. */
  phase: 'setup' | 'training';
  exitCode: number | null;
  signal: string | null;
  /** expctl killed the group because the kill limit (or the setup limit) ran out. */
  timedOut: boolean;
  /** expctl killed the group because the experiment was canceled. */
  canceled: boolean;
  /** The run's supervisor was killed by something other than expctl (e.g. from inside the run). */
  supervisorKilled: boolean;
  /** OOM kills counted by the run's cgroup; null where the host gives the run no cgroup. */
  oomKills: number | null;
  /** Peak memory of the run's cgroup, in bytes; null where unknown. */
  peakMemoryBytes: number | null;
  /** How the run's processes were contained (absent in outcomes recorded before it existed). */
  containment?: ContainmentKind;
  timings: RunTimings;
  metrics: Record<string, number | string> | null;
  logTail: string;
  logPath: string;
  startedAt: string;
  endedAt: string;
  /** Files the run wrote to its artifact directory, each listed in a manifest that names the experiment. */
  artifacts: RunArtifact[];
  /** Heartbeats the worker sent while supervising the run. */
  heartbeats: { count: number; firstAt: string | null; lastAt: string | null; intervalSeconds: number };
  /** The run's checkpoints: what it started from, what reached the fleet store, what was skipped and why. */
  checkpoint?: CheckpointOutcome;
  /** Where the log shipped to the fleet store is: the attempt's chunk list. */
  log?: { document: string; store: string; bytes: number; chunks: number; complete: boolean };
  /** Named problems with the fleet store (what is missing from it), e.g. "store unreachable: …". */
  storeProblems?: string[];
  /** A GPU of the run failed while it trained (the worker stopped the run). */
  gpuFailure?: GpuFailure;
  /** The worker gave the run's lease back at its exit, before this outcome was recorded: the experiment need not. */
  leaseReleased?: boolean;
  /** What the host's sampler saw of the run's GPUs while it trained, or why nothing (absent: recorded before it). */
  gpuTelemetry?: GpuTelemetry;
}

/** Where a run's checkpoint came from: an earlier attempt's (resume), another experiment's (`--checkpoint store:ID`). */
export type CheckpointRestore =
  | {
      restored: true;
      experimentId: string;
      attempt: number;
      syncedAt: string;
      /** Training seconds the checkpoint holds (earlier attempts included). */
      trainingSeconds: number;
      files: number;
      bytes: number;
      seconds: number;
    }
  /** Nothing restored: the run started fresh, and why. */
  | { restored: false; reason: string };

/** TrainingOutcome.checkpoint: present for a run that was asked to resume or that wrote a checkpoint. */
export interface CheckpointOutcome {
  restore?: CheckpointRestore;
  /** The attempt's latest checkpoint in the store (null: none synced). */
  synced: { files: number; bytes: number; syncedAt: string } | null;
  skipped: { path: string; bytes: number; reason: 'over_quota' | 'quota_full' }[];
  /** Why syncing stopped before the run ended (a later attempt holds the run's fence). */
  stopped?: string;
}
