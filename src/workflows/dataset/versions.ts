import { getExternalWorkflowHandle, ParentClosePolicy, startChild } from '@temporalio/workflow';
import { datasetVersionWorkflowId, type SealReason, type VersionState } from '../../domain/datasets.js';
import { CONTROL_TASK_QUEUE } from '../../shared/constants.js';
import { datasetVersionWorkflow } from '../dataset-version.js';
import { sealVersionSignal } from '../definitions.js';
import type { DatasetHome } from './state.js';

/** Opens the next version, as a child workflow that holds its lateness timer and its gates. */
export async function open(
  home: DatasetHome,
  expectedShards: number,
  latenessMs: number,
  arrivedAt: string,
): Promise<VersionState> {
  const { dataset, state } = home;
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

/** Seals an open version and tells its workflow, which runs the gates. */
export async function seal(home: DatasetHome, version: VersionState, reason: SealReason): Promise<void> {
  if (version.status !== 'open') return;
  version.status = 'sealed';
  version.sealReason = reason;
  version.sealedAt = new Date().toISOString();
  await getExternalWorkflowHandle(datasetVersionWorkflowId(home.dataset, version.version)).signal(sealVersionSignal, {
    reason,
    sealedAt: version.sealedAt,
  });
}
