import { CancellationScope, upsertSearchAttributes } from '@temporalio/workflow';
import type { RecordUpdate } from '../../catalog/record.js';
import type { Identity } from '../../domain/authorization.js';
import { DEFAULT_METRIC, type TagDecision } from '../../domain/decision.js';
import type { ExperimentStatus, TerminalStatus } from '../../domain/experiment.js';
import type { ExperimentRequest } from '../../domain/request.js';
import { publicRequest, runSecretValues, scrubText } from '../../domain/redact.js';
import { SA } from '../../shared/search-attributes.js';
import type { GpuFailure } from '../../domain/telemetry.js';
import { gpuFailedSignal, releaseLeaseSignal, type Lease } from '../definitions.js';
import type { ExperimentInput, ExperimentSnapshot } from '../experiment-state.js';
import { localControl, pool } from './activities.js';

/** What the catalog has not been told yet: it travels with the next state change. */
export type PendingRecord = Omit<RecordUpdate, 'experimentId'> & { events: NonNullable<RecordUpdate['events']> };

/** The one state every phase of an experiment reads and moves. */
export interface ExperimentRun {
  readonly input: ExperimentInput;
  readonly request: ExperimentRequest;
  readonly experimentId: string;
  /** What the state query shows. */
  readonly snapshot: ExperimentSnapshot;
  /** Removes the run's secret values from a text this workflow writes (notes, reasons). */
  readonly scrub: (text: string) => string;
  /** Everything up to the decision; a signed cancel cancels it (Temporal's own cancel reaches it too). */
  readonly body: CancellationScope;
  /** An evaluation is judged by its promotion, never by its tag. */
  readonly evaluation: boolean;
  lease?: Lease;
  revoked?: { leaseId: string; reason: string };
  /** The attempt under way on a lease, canceled when the lease is revoked. */
  attemptScope?: CancellationScope;
  canceledBy?: Identity;
  batchDecision?: TagDecision;
  /** Why the batch's deadline ended the run, once it has. */
  pastDeadline?: string;
  bodyDone: boolean;
  /**
   * What the catalog has not been told yet. It travels with the next state change, so the record
   * advances with the run at one activity per state rather than one per fact.
   */
  pending: PendingRecord;
  /** This run's count of record updates: the catalog ignores one older than it has applied. */
  revision: number;
}

/** How a run ended, with its reason: thrown by any phase that ends it early. */
export class RunEnded extends Error {
  constructor(
    readonly status: TerminalStatus,
    readonly reason: string,
  ) {
    super(reason);
  }
}

export function newRun(input: ExperimentInput): ExperimentRun {
  const { request, experimentId } = input;
  // The request carries secret values to the worker; what is shown (the state query) is its public
  // form, and every text this workflow writes (notes, reasons) is scrubbed of the run's secrets.
  const secretValues = runSecretValues(request);
  return {
    input,
    request,
    experimentId,
    snapshot: {
      experimentId,
      tag: request.tag,
      status: 'submitted',
      request: publicRequest(request),
      submittedAt: input.submittedAt,
      timeline: [{ status: 'submitted', at: input.submittedAt }],
      validation: null,
      placement: null,
      gpu: null,
      worker: null,
      attempts: 0,
      training: null,
      metric: null,
      decision: null,
      reason: null,
      metricPolicy: {
        name: request.metric?.name ?? DEFAULT_METRIC.name,
        direction: request.metric?.direction ?? DEFAULT_METRIC.direction,
      },
    },
    scrub: (text) => scrubText(text, secretValues),
    body: new CancellationScope(),
    evaluation: input.purpose === 'evaluation',
    bodyDone: false,
    pending: { events: [] },
    revision: 0,
  };
}

/** Moves to a state in the live snapshot and search attributes; the catalog hears of it with the next advance. */
export function mark(run: ExperimentRun, status: ExperimentStatus, unscrubbed?: string): void {
  const at = new Date().toISOString();
  const note = unscrubbed === undefined ? undefined : run.scrub(unscrubbed);
  const { snapshot } = run;
  snapshot.status = status;
  snapshot.timeline.push({ status, at, ...(note ? { note } : {}) });
  upsertSearchAttributes([{ key: SA.status, value: status }]);
  run.pending.events.push({ status, at, ...(note ? { note } : {}), seq: snapshot.timeline.length - 1 });
}

/** Moves to a state and writes it, with everything pending, to the catalog. */
export async function advance(
  run: ExperimentRun,
  status: ExperimentStatus,
  note?: string,
  record: Omit<RecordUpdate, 'experimentId' | 'events'> = {},
): Promise<void> {
  mark(run, status, note);
  const update = { ...run.pending, ...record, experimentId: run.experimentId, status, revision: ++run.revision };
  run.pending = { events: [] };
  await localControl.recordExperiment(update);
}

/**
 * Tells the pool that a GPU of the lease failed under the run, so it drains that GPU only; sent
 * (and delivered) before the lease is released, so the failed GPU is never granted in between.
 */
export async function drainFailedGpu(run: ExperimentRun, lease: Lease, failure: GpuFailure): Promise<void> {
  // Only a GPU this lease holds: a worker naming another one is not taken at its word.
  if (!lease.slots.some((slot) => slot.slotId === failure.slotId)) return;
  await pool()
    .signal(gpuFailedSignal, { experimentId: run.experimentId, failure })
    .catch(() => undefined);
}

/** Gives the lease back to the pool (a pool that is gone has nothing to release). */
export async function releaseLease(run: ExperimentRun): Promise<void> {
  await pool()
    .signal(releaseLeaseSignal, { experimentId: run.experimentId })
    .catch(() => undefined);
  run.lease = undefined;
  run.revoked = undefined;
}
