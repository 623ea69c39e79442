import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
} from '@temporalio/workflow';
import type { createDatasetActivities } from '../activities/datasets.js';
import {
  datasetVersionWorkflowId,
  datasetWorkflowId,
  KEPT_SEALED_VERSIONS,
  LATE_POLICIES,
  LATE_REFUSED,
  newDatasetState,
  SHARD_CONFLICT,
  shardOfferProblem,
  SHARD_COUNT_MISMATCH,
  VERSION_UNKNOWN,
  type AddShardResult,
  type DatasetState,
  type IngestedShard,
  type SealReason,
  type ShardOffer,
  type VersionState,
} from '../domain/datasets.js';
import { shardPositionProblem } from '../domain/bounds.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { HISTORY_EVENTS_LIMIT } from '../domain/limits.js';
import { requirePermission } from './authorize.js';
import { datasetVersionWorkflow } from './dataset-version.js';
import {
  addShardUpdate,
  configureDatasetUpdate,
  datasetStateQuery,
  sealRequestSignal,
  sealVersionSignal,
  shardArrivedSignal,
  versionDecidedSignal,
} from './definitions.js';

const data = proxyActivities<ReturnType<typeof createDatasetActivities>>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '10m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

/** Runs `fn` after every earlier one finished: decisions on membership and seals never interleave. */
function serializer() {
  let tail: Promise<unknown> = Promise.resolve();
  return <T>(fn: () => Promise<T>): Promise<T> => {
    const run = tail.then(fn);
    tail = run.catch(() => undefined);
    return run;
  };
}

/**
 * One durable home per dataset (`expctl-dataset-NAME`): takes each signed shard delivery, stores
 * it, decides which version it belongs to (duplicate, conflict, late), opens versions as child
 * workflows and seals them. Deliveries are at-least-once, in any order.
 */
export async function datasetWorkflow(dataset: string, carried?: DatasetState): Promise<void> {
  const state: DatasetState = carried ?? newDatasetState(dataset);
  const serially = serializer();
  const subject = (version: number) => `${dataset}@${version}`;

  setHandler(datasetStateQuery, () => state);

  const find = (version: number) => state.versions.find((v) => v.version === version);
  const newestOpen = () => state.versions.filter((v) => v.status === 'open').sort((a, b) => b.version - a.version)[0];
  const forget = () => {
    const sealed = state.versions.filter((v) => v.status !== 'open').sort((a, b) => b.version - a.version);
    const drop = new Set(sealed.slice(KEPT_SEALED_VERSIONS).map((v) => v.version));
    if (drop.size) state.versions = state.versions.filter((v) => !drop.has(v.version));
  };

  async function open(expectedShards: number, latenessMs: number, arrivedAt: string): Promise<VersionState> {
    const version: VersionState = {
      version: state.nextVersion++,
      expectedShards,
      shards: {},
      status: 'open',
      openedAt: arrivedAt,
      latenessMs,
      sealedAt: null,
      sealReason: null,
    };
    state.versions.push(version);
    await startChild(datasetVersionWorkflow, {
      workflowId: datasetVersionWorkflowId(dataset, version.version),
      taskQueue: CONTROL_TASK_QUEUE,
      args: [{ dataset, version: version.version, expectedShards, latenessMs, received: [] }],
      // The dataset continues as new while versions wait; they outlive each run.
      parentClosePolicy: ParentClosePolicy.ABANDON,
    });
    return version;
  }

  async function seal(version: VersionState, reason: SealReason): Promise<void> {
    if (version.status !== 'open') return;
    version.status = 'sealed';
    version.sealReason = reason;
    version.sealedAt = new Date().toISOString();
    await getExternalWorkflowHandle(datasetVersionWorkflowId(dataset, version.version)).signal(sealVersionSignal, {
      reason,
      sealedAt: version.sealedAt,
    });
  }

  /** Adds the shard to an open version: duplicate, conflict, count mismatch or accepted (sealing when complete). */
  async function addTo(
    version: VersionState,
    offer: ShardOffer,
    shard: IngestedShard,
    arrivedAt: string,
    lateFor: number | null,
  ): Promise<AddShardResult> {
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
    const entry = {
      ...shard,
      index: offer.shardIndex,
      count: offer.shardCount,
      declaredSha256: offer.declaredSha256,
      declaredRecords: offer.declaredRecords ?? null,
      fileName: offer.fileName,
      arrivedAt,
    };
    const record = (duplicate: boolean) =>
      data.recordShard({
        dataset,
        version: version.version,
        workflowId: datasetVersionWorkflowId(dataset, version.version),
        expectedShards: version.expectedShards,
        openedAt: version.openedAt,
        shard: entry,
        duplicate,
      });
    const held = version.shards[String(offer.shardIndex)];
    if (held === shard.sha256) {
      await record(true);
      return result('duplicate');
    }
    if (offer.shardCount !== version.expectedShards) {
      throw ApplicationFailure.nonRetryable(
        `${SHARD_COUNT_MISMATCH}: shard ${offer.shardIndex}/${offer.shardCount} does not fit ${subject(version.version)}, which has ${version.expectedShards} shards`,
        SHARD_COUNT_MISMATCH,
      );
    }
    if (held !== undefined) {
      await data.raiseAlert({
        kind: 'shard_conflict',
        subject: subject(version.version),
        code: SHARD_CONFLICT,
        message: `shard ${offer.shardIndex} of ${subject(version.version)} arrived again with other content (${shard.sha256.slice(0, 12)}…, held ${held.slice(0, 12)}…); refused`,
        details: { shardIndex: offer.shardIndex, held, offered: shard.sha256, fileName: offer.fileName },
        key: `shard_conflict:${subject(version.version)}:${offer.shardIndex}:${shard.sha256}`,
        at: arrivedAt,
      });
      throw ApplicationFailure.nonRetryable(
        `${SHARD_CONFLICT}: shard ${offer.shardIndex} of ${subject(version.version)} already arrived with sha256 ${held}; this delivery has ${shard.sha256} (a version's shards never change)`,
        SHARD_CONFLICT,
      );
    }
    version.shards[String(offer.shardIndex)] = shard.sha256;
    await record(false);
    await getExternalWorkflowHandle(datasetVersionWorkflowId(dataset, version.version)).signal(shardArrivedSignal, {
      index: offer.shardIndex,
    });
    if (Object.keys(version.shards).length === version.expectedShards) await seal(version, 'complete');
    return result('accepted');
  }

  async function take(offer: ShardOffer, shard: IngestedShard, arrivedAt: string): Promise<AddShardResult> {
    state.deliveries++;
    const latenessMs = offer.latenessMs ?? state.policy.latenessMs;
    let version: VersionState | undefined;
    if (offer.version !== undefined) {
      version = find(offer.version);
      if (!version && offer.version === state.nextVersion)
        version = await open(offer.shardCount, latenessMs, arrivedAt);
      if (!version && offer.version > state.nextVersion)
        throw ApplicationFailure.nonRetryable(
          `${VERSION_UNKNOWN}: ${subject(offer.version)} does not exist; the next version of ${dataset} is ${state.nextVersion}`,
          VERSION_UNKNOWN,
        );
    } else {
      version = newestOpen();
      const newest = state.versions.reduce<VersionState | undefined>(
        (a, b) => (a && a.version > b.version ? a : b),
        undefined,
      );
      // A redelivery of the newest version's shard counts once, sealed or not.
      if (!version && newest?.shards[String(offer.shardIndex)] === shard.sha256) version = newest;
      version ??= await open(offer.shardCount, latenessMs, arrivedAt);
    }
    if (version && version.status === 'open') return addTo(version, offer, shard, arrivedAt, null);
    if (version && version.shards[String(offer.shardIndex)] === shard.sha256)
      return addTo(version, offer, shard, arrivedAt, null);

    // Late: its version sealed already (or is so old that only the catalog remembers it).
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
        `${LATE_REFUSED}: shard ${offer.shardIndex} arrived after ${subject(lateFor)} sealed, and ${dataset}'s late policy is refuse`,
        LATE_REFUSED,
      );
    }
    const next = newestOpen() ?? (await open(offer.shardCount, latenessMs, arrivedAt));
    await data.recordLateShard({ ...late, action: 'next', movedToVersion: next.version });
    const taken = await addTo(next, offer, shard, arrivedAt, lateFor);
    return { ...taken, outcome: taken.outcome === 'accepted' ? 'late_next' : taken.outcome };
  }

  setHandler(
    addShardUpdate,
    async (offer, authorization) => {
      await requirePermission({
        authorization,
        action: 'add_data',
        target: datasetWorkflowId(dataset),
        content: offer,
        acceptedAt: new Date().toISOString(),
        detail: `shard ${offer.shardIndex}/${offer.shardCount} ${offer.fileName}`,
      });
      const shard = await data.ingestShard({ upload: offer.upload, fileName: offer.fileName });
      return serially(() => take(offer, shard, new Date().toISOString()));
    },
    {
      validator: (offer, _authorization) => {
        if (offer.dataset !== dataset) throw new Error(`this is dataset ${dataset}'s workflow, not ${offer.dataset}'s`);
        // Before anything is recorded: a request naming a path never reaches an activity.
        const refused = shardOfferProblem(offer);
        if (refused) throw ApplicationFailure.nonRetryable(refused.message, refused.code);
        const position = shardPositionProblem(offer.shardIndex, offer.shardCount);
        if (position) throw new Error(position);
        if (offer.version !== undefined && !(Number.isInteger(offer.version) && offer.version >= 1))
          throw new Error('version must be a whole number >= 1');
        if (offer.latenessMs !== undefined && !(Number.isInteger(offer.latenessMs) && offer.latenessMs > 0))
          throw new Error('latenessMs must be a whole number > 0');
      },
    },
  );

  setHandler(sealRequestSignal, ({ version }) =>
    serially(async () => {
      const held = find(version);
      if (held) await seal(held, 'lateness');
    }),
  );
  setHandler(versionDecidedSignal, ({ version, status }) => {
    const held = find(version);
    if (held) held.status = status;
    forget();
  });

  setHandler(
    configureDatasetUpdate,
    async (policy, authorization) => {
      await requirePermission({
        authorization,
        action: 'configure_dataset',
        target: datasetWorkflowId(dataset),
        content: policy,
        acceptedAt: new Date().toISOString(),
      });
      state.policy = { ...state.policy, ...policy };
      return state;
    },
    {
      validator: (policy, _authorization) => {
        if (policy.latenessMs !== undefined && !(Number.isInteger(policy.latenessMs) && policy.latenessMs > 0))
          throw new Error('latenessMs must be a whole number of milliseconds > 0');
        if (policy.latePolicy !== undefined && !(LATE_POLICIES as readonly string[]).includes(policy.latePolicy))
          throw new Error(`latePolicy must be one of ${LATE_POLICIES.join(', ')}`);
      },
    },
  );

  await condition(() => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > HISTORY_EVENTS_LIMIT);
  await condition(allHandlersFinished);
  await continueAsNew<typeof datasetWorkflow>(dataset, state);
}
