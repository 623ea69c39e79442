import type { PromotionInput, PromotionResult } from './promotion-definitions.js';
import { moveAlias } from './promotion/alias.js';
import { approve } from './promotion/approve.js';
import { evaluateHoldout } from './promotion/evaluate.js';
import { endedEarly, finish } from './promotion/finish.js';
import { admit, listen } from './promotion/handlers.js';
import { checkIntegrity } from './promotion/integrity.js';
import { prepare } from './promotion/prepare.js';
import { newPromotion, type PromotionEnded } from './promotion/state.js';

/**
 * A kept experiment's model through staged gates (BRIEF §8): integrity → holdout evaluation on the
 * fleet (a child experiment) compared with the alias's incumbent → optional approval → the alias
 * moves (compare-and-set). Every stage and the end carry a deterministic code.
 */
export async function promotionWorkflow(input: PromotionInput): Promise<PromotionResult> {
  const run = newPromotion(input);
  listen(run);
  const requester = await admit(run);

  let ended: PromotionEnded;
  try {
    const candidate = await prepare(run);
    const artifactPath = await checkIntegrity(run, candidate);
    const holdout = await evaluateHoldout(run, candidate, artifactPath, requester);
    await approve(run);
    ended = await moveAlias(run, candidate, holdout, requester);
  } catch (error) {
    ended = await endedEarly(run, error);
  }
  return finish(run, ended);
}
