import { sleep } from '@temporalio/workflow';
import type { AttemptEnd, AttemptRecord } from '../../domain/attempts.js';
import { resumedFromOutcome, withLostSeconds } from '../../domain/attempts.js';
import { gpuFailureReason } from '../../domain/classify.js';
import type { TrainingOutcome } from '../../domain/experiment.js';
import type { ExperimentRequest } from '../../domain/request.js';
import type { Lease } from '../definitions.js';
import { acquire } from './acquire.js';
import { attemptOn, type AttemptCarry, type AttemptResult } from './attempt.js';
import { localControl } from './activities.js';
import { drainFailedGpu, releaseLease, RunEnded, type ExperimentRun } from './state.js';

type Requirements = ExperimentRequest['requirements'];

/** Infrastructure failures of the train step (not the training itself) are retried this often. */
const INFRA_ATTEMPTS = 3;

/**
 * Acquires a lease and trains on it, again on a healthy slot of the same class when the host is
 * lost (up to the request's maxReplacements), and again after an infrastructure failure. A run
 * whose host was lost is placed again only once that host has surely stopped it (its fencing
 * time), and resumes from its latest checkpoint, charged with the training time already used.
 */
export async function train(run: ExperimentRun): Promise<{ outcome: TrainingOutcome; lease: Lease }> {
  const { request, snapshot } = run;
  let replacements = 0;
  let infraFailures = 0;
  let note: string | undefined;
  let requirements = request.requirements;
  let lost: string | undefined;
  let carry: AttemptCarry = run.input.resumeFrom ? { resume: true, resumeFrom: run.input.resumeFrom } : {};
  for (;;) {
    const granted = await acquire(run, note, requirements, lost);
    lost = undefined;
    snapshot.attempts++;
    const record = beginAttempt(run, granted, carry);
    const attempt = await attemptOn(run, granted, carry, {
      reattached: () => record.reattached++,
      trained: (seconds) => (record.trainedSeconds = seconds),
    });
    endAttempt(run, record, attempt);
    if (!attempt.outcome && !run.pending.environment) await keepLostEnvironment(run);
    if (attempt.outcome?.gpuFailure) await drainFailedGpu(run, granted, attempt.outcome.gpuFailure);
    if (attempt.outcome) {
      run.leaseReturned = attempt.outcome.leaseReleased === true;
      return { outcome: attempt.outcome, lease: granted };
    }
    await releaseLease(run);
    if (attempt.refused !== undefined) throw new RunEnded('validation_failed', attempt.refused);
    if (attempt.lost !== undefined) {
      if (replacements >= request.maxReplacements) throw new RunEnded('worker_lost', attempt.lost);
      replacements++;
      // Placed again on the same accelerator class and as many GPUs (`all` resolved to the count it
      // was granted), so its metric stays comparable with the first attempt's.
      requirements = replacementRequirements(request.requirements, granted);
      const where =
        granted.slots.length > 1
          ? `${granted.slots.length} healthy ${granted.slot.acceleratorClass} GPUs of one host`
          : `a healthy ${granted.slot.acceleratorClass} slot`;
      note = `re-placed (attempt ${snapshot.attempts + 1}) on ${where} after: ${attempt.lost}`;
      lost = attempt.lost;
      carry = { resume: true, trainedSeconds: (carry.trainedSeconds ?? 0) + (record.trainedSeconds ?? 0) };
      // Never two attempts training at once: the lost host's supervisor stops the run within its fencing time.
      await untilFenced(attempt.replaceAfterMs);
      continue;
    }
    infraFailures++;
    if (infraFailures >= INFRA_ATTEMPTS) {
      throw new RunEnded('retry_exhausted', `infrastructure failed ${infraFailures} times; last: ${attempt.infra}`);
    }
    note = `retry ${infraFailures + 1} after: ${attempt.infra}`;
    await sleep(2 ** infraFailures * 1000);
  }
}

/**
 * An attempt that ended without an outcome still says where and with what it trained: its host
 * recorded the environment in the train task's heartbeat, read while the task is still pending.
 */
async function keepLostEnvironment(run: ExperimentRun): Promise<void> {
  const environment = await localControl.recordedEnvironment(run.experimentId).catch(() => null);
  if (environment) run.pending.environment = environment;
}

/** What a re-placed run asks for: the class and the GPU count its lost attempt was granted. */
export function replacementRequirements(requirements: Requirements, granted: Lease): Requirements {
  return { ...requirements, acceleratorClass: granted.slot.acceleratorClass, gpus: granted.slots.length };
}

/** Waits until a lost attempt's host has surely stopped its run (nothing to wait for without a time). */
async function untilFenced(replaceAfterMs: number | undefined): Promise<void> {
  if (replaceAfterMs === undefined) return;
  const wait = replaceAfterMs - Date.now();
  if (wait > 0) await sleep(wait);
}

/** The attempt's entry in the per-attempt record, from the moment it holds its lease. */
function beginAttempt(run: ExperimentRun, granted: Lease, carry: AttemptCarry): AttemptRecord {
  const record: AttemptRecord = {
    attempt: run.snapshot.attempts,
    host: granted.slot.host,
    slotId: granted.slot.slotId,
    startedAt: new Date().toISOString(),
    endedAt: null,
    ended: null,
    why: null,
    reattached: 0,
    resumedFrom: null,
    carriedSeconds: carry.trainedSeconds ?? 0,
    trainedSeconds: null,
    lostSeconds: null,
  };
  run.snapshot.attemptRecords = [...(run.snapshot.attemptRecords ?? []), record];
  return record;
}

/** How the attempt ended, kept in its entry; the lost attempt before it learns what it lost. */
function endAttempt(run: ExperimentRun, record: AttemptRecord, result: AttemptResult): void {
  const [ended, why] = attemptEnd(result);
  record.endedAt = new Date().toISOString();
  record.ended = ended;
  record.why = why === null ? null : run.scrub(why);
  record.resumedFrom = resumedFromOutcome(result.outcome ?? null);
  if (result.outcome?.gpuFailure) record.gpuFailure = result.outcome.gpuFailure;
  record.trainedSeconds = result.outcome
    ? result.outcome.timings.processSeconds
    : (result.trainedSeconds ?? record.trainedSeconds);
  const records = run.snapshot.attemptRecords ?? [];
  run.snapshot.attemptRecords = withLostSeconds(records, run.experimentId);
  run.pending.attemptRecords = run.snapshot.attemptRecords;
}

function attemptEnd(result: AttemptResult): [AttemptEnd, string | null] {
  if (result.outcome?.gpuFailure) return ['gpu_failed', gpuFailureReason(result.outcome.gpuFailure)];
  if (result.outcome) return [result.outcome.canceled ? 'canceled' : 'completed', null];
  if (result.lost !== undefined) return ['lost', result.lost];
  if (result.refused !== undefined) return ['refused', result.refused];
  return ['infra_failed', result.infra ?? null];
}
