import { ApplicationFailure, setHandler } from '@temporalio/workflow';
import { datasetWorkflowId, LATE_POLICIES, shardOfferProblem } from '../../domain/datasets.js';
import { shardPositionProblem } from '../../domain/bounds.js';
import { requirePermission } from '../authorize.js';
import {
  addShardUpdate,
  configureDatasetUpdate,
  datasetStateQuery,
  sealRequestSignal,
  versionDecidedSignal,
} from '../definitions.js';
import { data, find, forget, type DatasetHome } from './state.js';
import { take } from './take.js';
import { seal } from './versions.js';

/** What the dataset answers: its state, signed shard deliveries, seal requests, its versions' decisions, its policy. */
export function listen(home: DatasetHome): void {
  setHandler(datasetStateQuery, () => home.state);
  acceptShards(home);
  setHandler(sealRequestSignal, ({ version }) =>
    home.serially(async () => {
      const held = find(home, version);
      if (held) await seal(home, held, 'lateness');
    }),
  );
  setHandler(versionDecidedSignal, ({ version, status }) => {
    const held = find(home, version);
    if (held) held.status = status;
    forget(home);
  });
  acceptPolicy(home);
}

/** Every shard arrives as a signed update: checked, ingested, then placed one at a time. */
function acceptShards(home: DatasetHome): void {
  const { dataset } = home;
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
      return home.serially(() => take(home, offer, shard, new Date().toISOString()));
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
}

/** An operator's signed change of the lateness window or the late policy. */
function acceptPolicy(home: DatasetHome): void {
  setHandler(
    configureDatasetUpdate,
    async (policy, authorization) => {
      await requirePermission({
        authorization,
        action: 'configure_dataset',
        target: datasetWorkflowId(home.dataset),
        content: policy,
        acceptedAt: new Date().toISOString(),
      });
      home.state.policy = { ...home.state.policy, ...policy };
      return home.state;
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
}
