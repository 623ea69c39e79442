import type { PromotionCandidate } from '../../activities/promotion.js';
import { promotion, PromotionEnded, type PromotionRun } from './state.js';

/** The candidate as the catalog holds it, and the alias's incumbent it must beat. */
export async function prepare(run: PromotionRun): Promise<PromotionCandidate> {
  const { input, snapshot } = run;
  const prepared = await promotion.preparePromotion({
    experimentId: input.experimentId,
    model: input.model,
    alias: input.alias,
    ...(input.artifact !== undefined ? { artifact: input.artifact } : {}),
  });
  if ('refusal' in prepared) throw new PromotionEnded('failed', prepared.refusal.code, prepared.refusal.reason);
  const { candidate } = prepared;
  snapshot.artifact = { path: candidate.artifact.path, sha256: candidate.artifact.sha256 };
  snapshot.metric = candidate.metric;
  snapshot.incumbentVersion = candidate.incumbent?.version ?? null;
  snapshot.incumbentMetric = candidate.incumbent?.holdoutMetric ?? null;
  return candidate;
}
