import { ApplicationFailure } from '@temporalio/workflow';
import {
  LATE_REFUSED,
  VERSION_UNKNOWN,
  type AddShardResult,
  type IngestedShard,
  type ShardOffer,
  type VersionState,
} from '../../domain/datasets.js';
import { addTo } from './add-shard.js';
import { data, find, newestOpen, subject, type DatasetHome } from './state.js';
import { open } from './versions.js';

/** Decides which version a delivered shard belongs to, opening one when needed, and adds it there. */
export async function take(
  home: DatasetHome,
  offer: ShardOffer,
  shard: IngestedShard,
  arrivedAt: string,
): Promise<AddShardResult> {
  const { state } = home;
  state.deliveries++;
  const latenessMs = offer.latenessMs ?? state.policy.latenessMs;
  const version =
    offer.version !== undefined
      ? await namedVersion(home, offer.version, offer.shardCount, latenessMs, arrivedAt)
      : await currentVersion(home, offer, shard, latenessMs, arrivedAt);
  if (version && version.status === 'open') return addTo(home, version, offer, shard, arrivedAt, null);
  if (version && version.shards[String(offer.shardIndex)] === shard.sha256)
    return addTo(home, version, offer, shard, arrivedAt, null);
  return takeLate(home, version, offer, shard, latenessMs, arrivedAt);
}

/** The version a delivery names: held, the next one (opened now), or unknown. */
async function namedVersion(
  home: DatasetHome,
  wanted: number,
  shardCount: number,
  latenessMs: number,
  arrivedAt: string,
): Promise<VersionState | undefined> {
  const { state, dataset } = home;
  let version = find(home, wanted);
  if (!version && wanted === state.nextVersion) version = await open(home, shardCount, latenessMs, arrivedAt);
  if (!version && wanted > state.nextVersion)
    throw ApplicationFailure.nonRetryable(
      `${VERSION_UNKNOWN}: ${subject(home, wanted)} does not exist; the next version of ${dataset} is ${state.nextVersion}`,
      VERSION_UNKNOWN,
    );
  return version;
}

/** A delivery that names no version goes to the newest open one, opened now if there is none. */
async function currentVersion(
  home: DatasetHome,
  offer: ShardOffer,
  shard: IngestedShard,
  latenessMs: number,
  arrivedAt: string,
): Promise<VersionState> {
  let version = newestOpen(home);
  const newest = home.state.versions.reduce<VersionState | undefined>(
    (a, b) => (a && a.version > b.version ? a : b),
    undefined,
  );
  // A redelivery of the newest version's shard counts once, sealed or not.
  if (!version && newest?.shards[String(offer.shardIndex)] === shard.sha256) version = newest;
  version ??= await open(home, offer.shardCount, latenessMs, arrivedAt);
  return version;
}

/**
 * Late: its version sealed already (or is so old that only the catalog remembers it). Refused, or
 * moved to the next open version, as the dataset's late policy says.
 */
async function takeLate(
  home: DatasetHome,
  version: VersionState | undefined,
  offer: ShardOffer,
  shard: IngestedShard,
  latenessMs: number,
  arrivedAt: string,
): Promise<AddShardResult> {
  const { dataset, state } = home;
  const lateFor = version?.version ?? offer.version!;
  const late = {
    dataset,
    version: lateFor,
    shardIndex: offer.shardIndex,
    shardCount: offer.shardCount,
    sha256: shard.sha256,
    fileName: offer.fileName,
    arrivedAt,
    sealedAt: version?.sealedAt ?? null,
  };
  if (state.policy.latePolicy === 'refuse') {
    await data.recordLateShard({ ...late, action: 'refused', movedToVersion: null });
    throw ApplicationFailure.nonRetryable(
      `${LATE_REFUSED}: shard ${offer.shardIndex} arrived after ${subject(home, lateFor)} sealed, and ${dataset}'s late policy is refuse`,
      LATE_REFUSED,
    );
  }
  const next = newestOpen(home) ?? (await open(home, offer.shardCount, latenessMs, arrivedAt));
  await data.recordLateShard({ ...late, action: 'next', movedToVersion: next.version });
  const taken = await addTo(home, next, offer, shard, arrivedAt, lateFor);
  return { ...taken, outcome: taken.outcome === 'accepted' ? 'late_next' : taken.outcome };
}
