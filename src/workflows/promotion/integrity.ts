import { ActivityFailure, isCancellation, proxyActivities } from '@temporalio/workflow';
import type {
  createArtifactCheckActivities,
  createStoredArtifactCheckActivities,
} from '../../activities/artifact-check.js';
import type { PromotionCandidate } from '../../activities/promotion.js';
import { PROMOTION_CODES, storedArtifactReference } from '../../domain/promotion.js';
import { CONTROL_TASK_QUEUE, hostTaskQueue } from '../../shared/constants.js';
import { failStage, PromotionEnded, stage, type PromotionRun } from './state.js';

/** How long the host that trained the candidate gets to answer the integrity check. */
const HOST_ANSWER = '60s';

/** Reading a model back from the store takes as long as its size does: minutes for a big one. */
const storeCheck = proxyActivities<ReturnType<typeof createStoredArtifactCheckActivities>>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '30m',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
});

/**
 * Stage 1, integrity: the candidate's bytes still hash to what its run recorded. Returns what the
 * holdout evaluation's EXPCTL_MODEL_ARTIFACT names: the stored object (any host fetches it), or,
 * for a run recorded before the fleet store, the file's path on the host that trained it.
 */
export async function checkIntegrity(run: PromotionRun, candidate: PromotionCandidate): Promise<string> {
  await stage(run, 'integrity', 'running');
  if (candidate.artifact.uri === null) return checkOnTrainingHost(run, candidate);
  const { sha256, path } = candidate.artifact;
  let checked;
  try {
    checked = await storeCheck.verifyStoredArtifact({ sha256, path });
  } catch (error) {
    if (!(error instanceof ActivityFailure) || isCancellation(error)) throw error;
    throw new PromotionEnded(
      'failed',
      PROMOTION_CODES.artifactMissing,
      `the fleet store that holds ${path} did not answer: ${error.cause?.message ?? error.message}`,
    );
  }
  if (checked.status === 'missing')
    await failStage(run, 'integrity', 'blocked', PROMOTION_CODES.artifactMissing, checked.problem);
  if (checked.status === 'corrupt')
    await failStage(run, 'integrity', 'blocked', PROMOTION_CODES.integrityMismatch, checked.problem);
  await stage(run, 'integrity', 'passed', undefined, `sha256 ${sha256} (fleet store)`);
  return storedArtifactReference(sha256, path);
}

/** A record made before the fleet store: the file is hashed again on the host that trained it. */
async function checkOnTrainingHost(run: PromotionRun, candidate: PromotionCandidate): Promise<string> {
  if (candidate.host === null) {
    const why = 'the record names no host that trained it, and the artifact is not in the fleet store';
    await failStage(run, 'integrity', 'blocked', PROMOTION_CODES.artifactMissing, why);
  }
  const host = proxyActivities<ReturnType<typeof createArtifactCheckActivities>>({
    taskQueue: hostTaskQueue(candidate.host!),
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
