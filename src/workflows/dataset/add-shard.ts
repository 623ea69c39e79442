import { ApplicationFailure, getExternalWorkflowHandle } from '@temporalio/workflow';
import {
  datasetVersionWorkflowId,
  SHARD_CONFLICT,
  SHARD_COUNT_MISMATCH,
  type AddShardResult,
  type IngestedShard,
  type ShardOffer,
  type VersionState,
} from '../../domain/datasets.js';
import { shardArrivedSignal } from '../definitions.js';
import { data, subject, type DatasetHome } from './state.js';
import { seal } from './versions.js';

/** Adds the shard to an open version: duplicate, conflict, count mismatch or accepted (sealing when complete). */
export async function addTo(
  home: DatasetHome,
  version: VersionState,
  offer: ShardOffer,
  shard: IngestedShard,
  arrivedAt: string,
  lateFor: number | null,
): Promise<AddShardResult> {
  const { dataset } = home;
  const result = (outcome: AddShardResult['outcome']): AddShardResult => ({
    dataset,
    outcome,
    version: version.version,
    lateFor,
    shardIndex: offer.shardIndex,
    shardCount: offer.shardCount,
    sha256: shard.sha256,
    records: shard.records,
    sealed: version.status !== 'open',
  });
  const record = (duplicate: boolean) => recordShard(home, version, offer, shard, arrivedAt, duplicate);
  const held = version.shards[String(offer.shardIndex)];
  if (held === shard.sha256) {
    await record(true);
    return result('duplicate');
  }
  if (offer.shardCount !== version.expectedShards) {
    throw ApplicationFailure.nonRetryable(
      `${SHARD_COUNT_MISMATCH}: shard ${offer.shardIndex}/${offer.shardCount} does not fit ${subject(home, version.version)}, which has ${version.expectedShards} shards`,
      SHARD_COUNT_MISMATCH,
    );
  }
  if (held !== undefined) return refuseConflict(home, version, offer, shard, held, arrivedAt);
  version.shards[String(offer.shardIndex)] = shard.sha256;
  await record(false);
  await getExternalWorkflowHandle(datasetVersionWorkflowId(dataset, version.version)).signal(shardArrivedSignal, {
    index: offer.shardIndex,
  });
  if (Object.keys(version.shards).length === version.expectedShards) await seal(home, version, 'complete');
  return result('accepted');
}

function recordShard(
  home: DatasetHome,
  version: VersionState,
  offer: ShardOffer,
  shard: IngestedShard,
  arrivedAt: string,
  duplicate: boolean,
) {
  return data.recordShard({
    dataset: home.dataset,
    version: version.version,
    workflowId: datasetVersionWorkflowId(home.dataset, version.version),
    expectedShards: version.expectedShards,
    openedAt: version.openedAt,
    shard: {
      ...shard,
      index: offer.shardIndex,
      count: offer.shardCount,
      declaredSha256: offer.declaredSha256,
      declaredRecords: offer.declaredRecords ?? null,
      fileName: offer.fileName,
      arrivedAt,
    },
    duplicate,
  });
}

/** A version's shards never change: other content for a held shard raises an alert and is refused. */
async function refuseConflict(
  home: DatasetHome,
  version: VersionState,
  offer: ShardOffer,
  shard: IngestedShard,
  held: string,
  arrivedAt: string,
): Promise<never> {
  const name = subject(home, version.version);
  await data.raiseAlert({
    kind: 'shard_conflict',
    subject: name,
    code: SHARD_CONFLICT,
    message: `shard ${offer.shardIndex} of ${name} arrived again with other content (${shard.sha256.slice(0, 12)}…, held ${held.slice(0, 12)}…); refused`,
    details: { shardIndex: offer.shardIndex, held, offered: shard.sha256, fileName: offer.fileName },
    key: `shard_conflict:${name}:${offer.shardIndex}:${shard.sha256}`,
    at: arrivedAt,
  });
  throw ApplicationFailure.nonRetryable(
    `${SHARD_CONFLICT}: shard ${offer.shardIndex} of ${name} already arrived with sha256 ${held}; this delivery has ${shard.sha256} (a version's shards never change)`,
    SHARD_CONFLICT,
  );
}
