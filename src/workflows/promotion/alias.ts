import type { PromotionCandidate } from '../../activities/promotion.js';
import { PROMOTION_CODES, type PromotionCode } from '../../domain/promotion.js';
import type { Holdout } from './evaluate.js';
import { failStage, promotion, PromotionEnded, stage, type PromotionRun } from './state.js';

/** Stage 4: the alias moves, only if it still holds the version the evaluation compared with. */
export async function moveAlias(
  run: PromotionRun,
  candidate: PromotionCandidate,
  holdout: Holdout,
  requester: string,
): Promise<PromotionEnded> {
  const { input, snapshot } = run;
  const { model, alias, promotionId } = input;
  await stage(run, 'alias', 'running');
  const moved = await promotion.moveAliasToCandidate({
    model,
    alias,
    expected: snapshot.incumbentVersion,
    candidate: {
      experimentId: candidate.experimentId,
      artifactPath: candidate.artifact.path,
      artifactSha256: candidate.artifact.sha256,
      promotionId,
      holdoutExperimentId: holdout.experimentId,
      holdoutMetric: holdout.metric,
      metricName: candidate.metric.name,
      direction: candidate.metric.direction,
    },
    by: snapshot.decidedBy ?? requester,
    promotionId,
  });
  if (!moved.moved) return failStage(run, 'alias', 'failed', moved.code as PromotionCode, moved.reason);
  snapshot.version = moved.version;
  const movedNote = `${model}@${alias}: version ${moved.previousVersion ?? 'none'} → ${moved.version}`;
  await stage(run, 'alias', 'passed', undefined, movedNote);
  return new PromotionEnded('promoted', PROMOTION_CODES.promoted, `${movedNote}; ${holdout.verdict}`);
}
