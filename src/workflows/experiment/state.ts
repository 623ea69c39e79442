import { CancellationScope, upsertSearchAttributes } from '@temporalio/workflow';
import type { RecordUpdate } from '../../catalog/record.js';
import type { Identity } from '../../domain/authorization.js';
import { DEFAULT_METRIC, type TagDecision } from '../../domain/decision.js';
import type { ExperimentStatus, TerminalStatus } from '../../domain/experiment.js';
import type { ExperimentRequest } from '../../domain/request.js';
import { publicRequest, runSecretValues, scrubText } from '../../domain/redact.js';
import { SA } from '../../shared/search-attributes.js';
import type { GpuFailure } from '../../domain/telemetry.js';
import { gpuFailedSignal, type Lease } from '../definitions.js';
import type { ExperimentInput, ExperimentSnapshot } from '../experiment-state.js';
import { localControl, pool } from './activities.js';

/** One search attribute's new value, as upsertSearchAttributes takes it. */
type SearchAttributePair = Extract<Parameters<typeof upsertSearchAttributes>[0], unknown[]>[number];

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
  /** Search attributes not yet written: one upsert per phase (publish), not one per fact. */
  attributes: SearchAttributePair[];
  /** How often this run asked the pool for a lease; 0: never, nothing to release. */
  leaseAsks: number;
  /** The worker gave the lease back at the run's exit (the outcome says so): nothing is left to release. */
  leaseReturned?: boolean;
  /** A patch validation left in the fleet store, for the catalog to keep as the run queues. */
  patchToKeep?: { experimentId: string; hostQueue: string; sha256: string; bytes: number; uri?: string };
}

/** A change of state as the timeline and the catalog keep it. */
export interface StatusEvent {
  status: ExperimentStatus;
  at: string;
  note?: string;
  seq: number;
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
    attributes: [],
    leaseAsks: 0,
  };
}

/** The next change of state, stamped now, in its place in the timeline. */
export function statusEvent(run: ExperimentRun, status: ExperimentStatus, unscrubbed?: string): StatusEvent {
  const note = unscrubbed === undefined ? undefined : run.scrub(unscrubbed);
  return { status, at: new Date().toISOString(), ...(note ? { note } : {}), seq: run.snapshot.timeline.length };
}

/** Shows a change of state in the live snapshot; its search attribute goes with the next publish. */
export function show(run: ExperimentRun, event: StatusEvent): void {
  const { snapshot } = run;
  snapshot.status = event.status;
  snapshot.timeline.push({ status: event.status, at: event.at, ...(event.note ? { note: event.note } : {}) });
  setAttribute(run, { key: SA.status, value: event.status });
}

/** Moves to a state in the live snapshot; the catalog hears of it with the next record, the search attributes with the next publish. */
export function mark(run: ExperimentRun, status: ExperimentStatus, unscrubbed?: string): void {
  const event = statusEvent(run, status, unscrubbed);
  show(run, event);
  run.pending.events.push(event);
}

/** A search attribute for the next publish (a later value of the same key replaces an earlier one). */
export function setAttribute(run: ExperimentRun, pair: SearchAttributePair): void {
  run.attributes = [...run.attributes.filter((kept) => kept.key.name !== pair.key.name), pair];
}

/** Writes the search attributes set since the last publish, in one upsert; before the run waits on anything long. */
export function publish(run: ExperimentRun): void {
  if (run.attributes.length === 0) return;
  upsertSearchAttributes(run.attributes);
  run.attributes = [];
}

/** The catalog's next record: everything pending, with these fields; pending starts afresh. */
export function nextRecord(
  run: ExperimentRun,
  status: ExperimentStatus,
  record: Omit<RecordUpdate, 'experimentId' | 'events'> = {},
): RecordUpdate {
  const update = { ...run.pending, ...record, experimentId: run.experimentId, status, revision: ++run.revision };
  run.pending = { events: [] };
  return update;
}

/** Moves to a state, publishes it, and writes it, with everything pending, to the catalog. */
export async function advance(
  run: ExperimentRun,
  status: ExperimentStatus,
  note?: string,
  record: Omit<RecordUpdate, 'experimentId' | 'events'> = {},
): Promise<void> {
  mark(run, status, note);
  publish(run);
  await localControl.recordExperiment(nextRecord(run, status, record));
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

/** Whether the run may hold a lease or a place in the pool's queue: it asked, and its worker did not give the lease back. */
export function holdsLease(run: ExperimentRun): boolean {
  return run.leaseAsks > 0 && !run.leaseReturned;
}

/**
 * What the run gives back: the lease it holds, by its id; without one, its place in the queue (or
 * behind a running lease: a run that names no lease was never handed the slot).
 */
export function leaseRelease(run: ExperimentRun): { experimentId: string; leaseId?: string } {
  const leaseId = run.lease?.leaseId;
  return { experimentId: run.experimentId, ...(leaseId !== undefined ? { leaseId } : {}) };
}

/**
 * Gives the lease back to the pool, and the run's place in its queue (a pool that is gone has
 * nothing to release; a run that never asked holds nothing). One local activity: it signals
 * through the client, which writes nothing in this history but its marker.
 */
export async function releaseLease(run: ExperimentRun): Promise<void> {
  if (holdsLease(run)) await localControl.releaseLease(leaseRelease(run)).catch(() => undefined);
  run.lease = undefined;
  run.revoked = undefined;
}
