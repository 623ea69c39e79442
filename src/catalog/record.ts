import type { PinnedDataset } from '../domain/dataset-refs.js';
import type { AttemptRecord } from '../domain/attempts.js';
import type { TagDecision } from '../domain/decision.js';
import type { ExperimentStatus, TrainingOutcome } from '../domain/experiment.js';
import type { PlacementRecord } from '../domain/placement.js';
import type { ExperimentRequest } from '../domain/request.js';
import type { GpuTelemetry } from '../domain/telemetry.js';

/** What the workflow sends the catalog as the run advances; every field is optional but the ID. */
export interface RecordUpdate {
  experimentId: string;
  /**
   * The workflow's count of its updates (1, 2, …). An update older than the newest one applied is a
   * retry that finished late (on another orchestrator, say): it adds its events, changes no field.
   */
  revision?: number;
  request?: ExperimentRequest;
  submittedAt?: string;
  origin?: { kind: 'retry' | 'rerun' | 'promotion'; of: string };
  /** The identity whose signed request started the run. */
  submittedBy?: string;
  /** The metric that decides the run, once the tag's policy is known. */
  metric?: { name: string; direction: 'minimize' | 'maximize' };
  status?: ExperimentStatus;
  /**
   * State changes for the timeline, oldest first. `seq` is the change's place in the run's timeline
   * (0: submitted): a write re-executed after its orchestrator died stamps the change with a new
   * time, and the catalog recognizes it by its place. Events of runs started before it carry none.
   */
  events?: { status: ExperimentStatus; at: string; note?: string; seq?: number }[];
  validation?: {
    resolvedConfig: unknown;
    /** A reference: the text is kept whole in the catalog's blobs by its sha256 (storePatch), never here. */
    patch: { sha256: string; bytes: number; files: string[]; /** The fleet store's object. */ uri?: string } | null;
    interpreter: string | null;
  };
  environment?: EnvironmentRecord;
  placement?: PlacementRecord;
  attempts?: number;
  training?: TrainingOutcome;
  decision?: TagDecision;
  reason?: string;
  /** The dataset versions the run was pinned to when it started. */
  datasetVersions?: PinnedDataset[];
  /** Every attempt so far (the whole list each time). */
  attemptRecords?: AttemptRecord[];
}

/** Where and with what a run trained (secrets already redacted by the worker). */
export interface EnvironmentRecord {
  host: string;
  software: Record<string, string>;
  driverVersion: string | null;
  lockfiles: Record<string, string>;
  variables: Record<string, string>;
}

export interface ArtifactRecord {
  path: string;
  sha256: string;
  bytes: number;
  /** Where the fleet store keeps it; null when recorded before the store, or never uploaded. */
  uri: string | null;
}

/** One experiment's whole record as the catalog keeps it (JSON columns decoded). */
export interface ExperimentRecord {
  id: string;
  tag: string;
  category: string;
  hypothesis: string;
  description: string;
  status: ExperimentStatus;
  reason: string | null;
  decision: 'keep' | 'discard' | null;
  action: string | null;
  metricName: string;
  metricDirection: 'minimize' | 'maximize';
  metric: number | null;
  best: number | null;
  delta: number | null;
  nearMiss: boolean;
  consecutiveCrashes: number | null;
  shouldAbort: boolean | null;
  sequence: number | null;
  /** The keep rule that decided (see decision.ts); null before the decision. */
  rule: string | null;
  failedGuard: string | null;
  repo: string;
  commit: string;
  command: string[];
  request: ExperimentRequest;
  resolvedConfig: unknown;
  /** The patch text of runs recorded before blobs (cut at 1 MiB); null since: read it by patchSha256. */
  patch: string | null;
  patchSha256: string | null;
  /** The whole patch's size in bytes (null for runs recorded before blobs). */
  patchBytes: number | null;
  /** The patch as a fleet store object (null when recorded before the store, or the store could not take it). */
  patchUri: string | null;
  patchFiles: string[] | null;
  datasets: string[] | null;
  environment: EnvironmentRecord | null;
  placement: PlacementRecord | null;
  gpu: string | null;
  worker: string | null;
  acceleratorClass: string | null;
  queuedMs: number | null;
  attempts: number;
  submittedAt: string;
  startedAt: string | null;
  endedAt: string | null;
  /**
   * Wall time of the run on its slot: from the training process's start to the run's end there
   * (what GPU-hours add up). Not the script's own training_seconds: that is timings.trainingSeconds.
   */
  slotSeconds: number | null;
  exitCode: number | null;
  signal: string | null;
  metrics: Record<string, number | string> | null;
  peakVramMb: number | null;
  logPath: string | null;
  logTail: string | null;
  heartbeats: TrainingOutcome['heartbeats'] | null;
  /** Where the time went: setup (and whether it was cached), startup, training, evaluation. */
  timings: TrainingOutcome['timings'] | null;
  phase: TrainingOutcome['phase'] | null;
  containment: string | null;
  peakMemoryBytes: number | null;
  oomKills: number | null;
  originKind: string | null;
  originId: string | null;
  /** The identity that submitted the run (null before credentials). */
  submittedBy: string | null;
  events: { at: string; status: string; note: string | null }[];
  artifacts: ArtifactRecord[];
  /** The dataset versions it was pinned to (empty when it named none, or ended before pinning). */
  datasetVersions: PinnedDataset[];
  /** Each attempt: host, slot, start and end, how it ended, the checkpoint it resumed from, the training time it lost. */
  attemptRecords?: AttemptRecord[] | null;
  /** What the host's sampler saw of the run's GPUs (summary and series per GPU), or why nothing; null before training. */
  gpuTelemetry?: GpuTelemetry | null;
  /** What to look at though the run ended as it did (telemetryWarnings: e.g. idle GPUs); null before training. */
  warnings?: string[] | null;
}
