import { CancellationScope } from '@temporalio/workflow';
import type { ExperimentResult } from '../domain/experiment.js';
import type { ExperimentInput } from './experiment-state.js';
import { admit } from './experiment/admit.js';
import { decide, runOutcome } from './experiment/decide.js';
import { endedEarly, evaluate } from './experiment/evaluate.js';
import { listen } from './experiment/handlers.js';
import { finishAlone, record } from './experiment/record.js';
import { mark, newRun, releaseLease, RunEnded } from './experiment/state.js';
import { train } from './experiment/train.js';
import { validate } from './experiment/validate.js';

/**
 * One experiment's lifecycle: admit the signed submission → validate on a capable host → train
 * (acquire a lease from the pool, run on the leased slot, again when a host is lost) → evaluate the
 * outcome → decide keep or discard on the tag → record the end. The lease is released on every path.
 */
export async function experimentWorkflow(input: ExperimentInput): Promise<ExperimentResult> {
  const run = newRun(input);
  listen(run);
  await admit(run);

  let ended: RunEnded;
  let acceleratorClass = 'unknown';
  try {
    await run.body.run(() => validate(run));
    const trained = await run.body.run(() => train(run));
    acceleratorClass = trained.lease.slot.acceleratorClass;
    ended = evaluate(run, trained.outcome);
  } catch (error) {
    ended = endedEarly(run, error);
  }
  run.bodyDone = true;
  ended = new RunEnded(ended.status, run.scrub(ended.reason));

  // Everything below must happen even when the experiment was canceled.
  return CancellationScope.nonCancellable(async () => {
    // A run its tag decides ends in one step; a batch child or an evaluation waits for its judge.
    if (!run.evaluation && !run.input.batch) {
      if (ended.status === 'completed') mark(run, 'evaluating');
      return finishAlone(run, ended, runOutcome(run, ended, acceleratorClass));
    }
    await releaseLease(run);
    const decision = await decide(run, ended, acceleratorClass);
    return record(run, ended, decision);
  });
}
