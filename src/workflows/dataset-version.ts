import {
  condition,
  getExternalWorkflowHandle,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { createDatasetActivities } from '../activities/datasets.js';
import { datasetWorkflowId, type SealReason, type VersionOutcome } from '../domain/datasets.js';
import { GATES } from '../domain/gates.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import {
  sealRequestSignal,
  sealVersionSignal,
  shardArrivedSignal,
  versionDecidedSignal,
  versionStateQuery,
} from './definitions.js';

const data = proxyActivities<ReturnType<typeof createDatasetActivities>>({
  taskQueue: CONTROL_TASK_QUEUE,
  startToCloseTimeout: '5m',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

export interface DatasetVersionInput {
  dataset: string;
  version: number;
  expectedShards: number;
  /** How long after its start the version waits for missing shards before it asks to be sealed. */
  latenessMs: number;
  /** Shards the dataset had already given it (a version opened by its first shard). */
  received: number[];
}

/**
 * One dataset version (`expctl-dataset-NAME-vV`): tracks its shards, asks its dataset to seal it
 * when the lateness allowance runs out (a durable timer), and, once sealed, runs the gates as
 * named steps, records the outcome and completes. The dataset workflow decides membership and
 * the seal, so a shard is either in the sealed version or late, never both.
 */
export async function datasetVersionWorkflow(input: DatasetVersionInput): Promise<VersionOutcome> {
  const received = new Set(input.received);
  let seal: { reason: SealReason; sealedAt: string } | undefined;
  const outcome: VersionOutcome = {
    dataset: input.dataset,
    version: input.version,
    status: 'open',
    sealReason: null,
    gates: [],
  };
  upsertSearchAttributes([
    { key: SA.dataset, value: input.dataset },
    { key: SA.datasetVersion, value: String(input.version) },
  ]);
  setHandler(shardArrivedSignal, ({ index }) => void received.add(index));
  setHandler(sealVersionSignal, (s) => void (seal ??= s));
  setHandler(versionStateQuery, () => ({
    ...outcome,
    received: [...received].sort((a, b) => a - b),
    expectedShards: input.expectedShards,
  }));

  if (!(await condition(() => seal !== undefined, input.latenessMs))) {
    await getExternalWorkflowHandle(datasetWorkflowId(input.dataset)).signal(sealRequestSignal, {
      version: input.version,
    });
    await condition(() => seal !== undefined);
  }
  outcome.status = 'sealed';
  outcome.sealReason = seal!.reason;
  await data.sealVersion({ dataset: input.dataset, version: input.version, ...seal! });

  for (const gate of GATES) {
    const result = await data.runGate({ dataset: input.dataset, version: input.version, gate });
    outcome.gates.push({ gate, passed: result.passed, code: result.code, message: result.message });
  }
  const status = await data.decideVersion({ dataset: input.dataset, version: input.version });
  outcome.status = status;
  upsertSearchAttributes([{ key: SA.gate, value: status }]);
  await getExternalWorkflowHandle(datasetWorkflowId(input.dataset)).signal(versionDecidedSignal, {
    version: input.version,
    status,
  });
  return outcome;
}
