import { sleep } from '@temporalio/workflow';
import type { TrainingOutcome } from '../../domain/experiment.js';
import type { Lease } from '../definitions.js';
import { acquire } from './acquire.js';
import { attemptOn } from './attempt.js';
import { releaseLease, RunEnded, type ExperimentRun } from './state.js';

/** Infrastructure failures of the train step (not the training itself) are retried this often. */
const INFRA_ATTEMPTS = 3;

/**
 * Acquires a lease and trains on it, again on a healthy slot of the same class when the host is
 * lost (up to the request's maxReplacements), and again after an infrastructure failure.
 */
export async function train(run: ExperimentRun): Promise<{ outcome: TrainingOutcome; lease: Lease }> {
  const { request, snapshot } = run;
  let replacements = 0;
  let infraFailures = 0;
  let note: string | undefined;
  let requirements = request.requirements;
  let lost: string | undefined;
  for (;;) {
    const granted = await acquire(run, note, requirements, lost);
    lost = undefined;
    snapshot.attempts++;
    const attempt = await attemptOn(run, granted);
    if (attempt.outcome) return { outcome: attempt.outcome, lease: granted };
    await releaseLease(run);
    if (attempt.refused !== undefined) throw new RunEnded('validation_failed', attempt.refused);
    if (attempt.lost !== undefined) {
      if (replacements >= request.maxReplacements) throw new RunEnded('worker_lost', attempt.lost);
      replacements++;
      // Placed again on the same accelerator class, so its metric stays comparable with the first attempt's.
      requirements = { ...request.requirements, acceleratorClass: granted.slot.acceleratorClass };
      note = `re-placed (attempt ${snapshot.attempts + 1}) on a healthy ${granted.slot.acceleratorClass} slot after: ${attempt.lost}`;
      lost = attempt.lost;
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
