import type { PinnedDataset } from '../domain/dataset-refs.js';
import type { Authorization } from '../domain/authorization.js';
import type { TagDecision } from '../domain/decision.js';
import type { ExperimentStatus, TrainingOutcome } from '../domain/experiment.js';
import type { ExperimentRequest } from '../domain/request.js';
import type { PlacementRecord } from '../domain/placement.js';
import type { AttemptRecord } from '../domain/attempts.js';

/** Input of experimentWorkflow: the validated request plus what the client resolved. */
export interface ExperimentInput {
  experimentId: string;
  request: ExperimentRequest;
  submittedAt: string;
  priority: number;
  /** Set when this experiment repeats another (`expctl retry` / `expctl rerun`). */
  origin?: { kind: 'retry' | 'rerun' | 'promotion'; of: string };
  /** The submitter's signed request (action submit on this experiment ID, over this input's digest). */
  authorization?: Authorization;
  /**
   * `evaluation`: a promotion's holdout evaluation, started as a child of the promotion workflow
   * (which authorizes it: no client can start a child), recorded like any run but taking no part
   * in its tag's keep/discard decisions.
   */
  purpose?: 'evaluation';
  /** With purpose `evaluation`: the identity that requested the promotion (recorded as submitted_by). */
  submittedBy?: string;
  /** A child of a batch (batch.ts): decided with its siblings by the batch, not alone. Signed with the request. */
  batch?: BatchMembership;
  /** `expctl retry ID --resume`: the experiment whose latest checkpoint the first attempt restores. */
  resumeFrom?: string;
}

export interface BatchMembership {
  /** The batch workflow's ID, which decides this run with its siblings. */
  batchId: string;
  /** When set (ISO time): a run not ended by then is canceled, with that reason. */
  deadline?: string;
}

/** What validation on the target host found and resolved (recorded; never re-derived). */
export interface ValidationReport {
  ok: boolean;
  reason: string | null;
  host: string;
  resolvedConfig: unknown;
  /**
   * Where validation kept the patch (a reference: its text never enters the history; see storePatch):
   * on the validating host, and as a fleet store object (`uri`; absent when the store could not take it).
   */
  patch: { path: string; sha256: string; bytes: number; files: string[]; uri?: string } | null;
  interpreter: string | null;
}

export interface TimelineEntry {
  status: ExperimentStatus;
  at: string;
  note?: string;
}

/** The live state an operator or the CLI reads with the experimentState query. */
export interface ExperimentSnapshot {
  experimentId: string;
  tag: string;
  status: ExperimentStatus;
  request: ExperimentRequest;
  submittedAt: string;
  timeline: TimelineEntry[];
  validation: ValidationReport | null;
  placement: PlacementRecord | null;
  /** The lead GPU of the lease (its only one for a 1-GPU run). */
  gpu: string | null;
  /** A multi-GPU run's every GPU, in topology order, lead first (absent for a 1-GPU run). */
  gpus?: string[];
  worker: string | null;
  attempts: number;
  training: TrainingOutcome | null;
  metric: number | null;
  decision: TagDecision | null;
  reason: string | null;
  /** The metric that decides this run: the tag's (resolved during validation). */
  metricPolicy: { name: string; direction: 'minimize' | 'maximize' };
  /** The identity that submitted it (null for runs from before credentials). */
  submittedBy?: string | null;
  /** The dataset versions its `NAME@latest` / `NAME@V` references were pinned to. */
  datasetVersions?: PinnedDataset[];
  /** Each attempt: its host and slot, when and how it ended, what it resumed from, what it lost. */
  attemptRecords?: AttemptRecord[];
}
