import { ActivityFailure, isCancellation, proxyActivities } from '@temporalio/workflow';
import type { createArtifactCheckActivities } from '../../activities/artifact-check.js';
import type { PromotionCandidate } from '../../activities/promotion.js';
import { PROMOTION_CODES } from '../../domain/promotion.js';
import { hostTaskQueue } from '../../shared/constants.js';
import { failStage, PromotionEnded, stage, type PromotionRun } from './state.js';

/** How long the host that trained the candidate gets to answer the integrity check. */
const HOST_ANSWER = '60s';

/**
 * Stage 1, integrity: the bytes on the host that trained it still hash to what the run recorded.
 * Returns the artifact's path on that host.
 */
export async function checkIntegrity(run: PromotionRun, candidate: PromotionCandidate): Promise<string> {
  await stage(run, 'integrity', 'running');
  const host = proxyActivities<ReturnType<typeof createArtifactCheckActivities>>({
    taskQueue: hostTaskQueue(candidate.host),
    scheduleToStartTimeout: HOST_ANSWER,
    startToCloseTimeout: '5m',
    retry: { maximumAttempts: 3 },
  });
  let hashed;
  try {
    hashed = await host.hashArtifact({ experimentId: candidate.experimentId, path: candidate.artifact.path });
  } catch (error) {
    if (!(error instanceof ActivityFailure) || isCancellation(error)) throw error;
    throw new PromotionEnded(
      'failed',
      PROMOTION_CODES.artifactMissing,
      `the host ${candidate.host} that holds the artifact did not answer: ${error.cause?.message ?? error.message}`,
    );
  }
  if (hashed.sha256 === null) {
    await stage(run, 'integrity', 'failed', PROMOTION_CODES.artifactMissing, hashed.problem ?? undefined);
    throw new PromotionEnded('blocked', PROMOTION_CODES.artifactMissing, hashed.problem ?? 'the artifact is gone');
  }
  if (hashed.sha256 !== candidate.artifact.sha256) {
    const why = `${candidate.artifact.path} now hashes to ${hashed.sha256}, not the ${candidate.artifact.sha256} recorded at the end of ${candidate.experimentId}`;
    await failStage(run, 'integrity', 'blocked', PROMOTION_CODES.integrityMismatch, why);
  }
  await stage(run, 'integrity', 'passed', undefined, `sha256 ${hashed.sha256}`);
  return hashed.absolutePath;
}
