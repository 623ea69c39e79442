import type { GpuFailure } from './telemetry.js';

/**
 * The per-attempt record of a run (issue 29): where each attempt trained, how it ended, what it
 * resumed from and what training time it lost. Pure: the workflow builds it, the catalog keeps it,
 * `expctl show` prints it.
 */

/**
 * How an attempt ended: it trained to an end (completed, whatever the exit), a GPU of it failed
 * (the worker stopped it), its host was lost, or it never trained.
 */
export type AttemptEnd = 'completed' | 'gpu_failed' | 'lost' | 'refused' | 'infra_failed' | 'canceled';

/** The checkpoint an attempt restored before its script started (from the outcome's `checkpoint.restore`). */
export interface ResumedFrom {
  experimentId: string;
  attempt: number;
  /** When that checkpoint was synced to the store. */
  writtenAt: string;
  /** Training seconds the checkpoint holds, earlier attempts included. */
  trainingSeconds: number;
}

export interface AttemptRecord {
  attempt: number;
  host: string;
  slotId: string;
  startedAt: string;
  endedAt: string | null;
  ended: AttemptEnd | null;
  /** Why it ended (lost, refused, failed), else null. */
  why: string | null;
  /** Times the workflow re-attached to it after a silence (a worker restart, a server outage). */
  reattached: number;
  resumedFrom: ResumedFrom | null;
  /** Training seconds of earlier attempts it was charged with (budget and kill limit). */
  carriedSeconds: number;
  /** Its own training seconds: from its outcome's timings, or its last heartbeat when lost; null when unknown. */
  trainedSeconds: number | null;
  /**
   * Training time it lost: what it trained beyond the checkpoint the next attempt resumed from
   * (all of it when the next attempt resumed from none of its checkpoints); null while unknown.
   */
  lostSeconds: number | null;
  /** The GPU that failed under it and the evidence (only an attempt that ended gpu_failed). */
  gpuFailure?: GpuFailure;
}

/** The outcome's `checkpoint.restore`, as the worker reports it (absent for runs that never resumed). */
export interface RestoreReport {
  restored: boolean;
  experimentId?: string;
  attempt?: number;
  syncedAt?: string;
  trainingSeconds?: number;
}

/** What an outcome says it resumed from, or null (read structurally: older workers report nothing). */
export function resumedFromOutcome(outcome: object | null): ResumedFrom | null {
  const restore = (outcome as { checkpoint?: { restore?: RestoreReport } } | null)?.checkpoint?.restore;
  if (!restore?.restored || restore.attempt === undefined || restore.syncedAt === undefined) return null;
  return {
    experimentId: restore.experimentId ?? '',
    attempt: restore.attempt,
    writtenAt: restore.syncedAt,
    trainingSeconds: restore.trainingSeconds ?? 0,
  };
}

/**
 * The training time each lost attempt lost, once the attempt after it is known: its own training
 * beyond what the next attempt resumed of it. Checkpoint seconds count from the run's start (earlier
 * attempts included), so the part of them this attempt trained is what exceeds its carried seconds.
 */
export function withLostSeconds(attempts: readonly AttemptRecord[], experimentId: string): AttemptRecord[] {
  return attempts.map((record, i) => {
    if (record.ended !== 'lost' || record.trainedSeconds === null) return record;
    const next = attempts[i + 1];
    const resumed = next?.resumedFrom;
    const fromThis = resumed && resumed.attempt === record.attempt && resumed.experimentId === experimentId;
    const kept = fromThis ? Math.max(0, resumed.trainingSeconds - record.carriedSeconds) : 0;
    return { ...record, lostSeconds: Math.max(0, Math.round((record.trainedSeconds - kept) * 10) / 10) };
  });
}
