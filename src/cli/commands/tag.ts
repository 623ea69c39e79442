import { WithStartWorkflowOperation, WorkflowNotFoundError } from '@temporalio/client';
import { newTagState, type TagPolicy } from '../../domain/decision.js';
import { CONTROL_TASK_QUEUE } from '../../shared/constants.js';
import { connectClient } from '../../temporal/connection.js';
import { configureTagUpdate, tagStateQuery } from '../../workflows/definitions.js';
import { tagWorkflow, tagWorkflowId } from '../../workflows/tag.js';
import { CliError, formatTable, printJson, wantsJson } from '../output.js';

export interface TagCreateOptions {
  metric?: string;
  maximize?: boolean;
  nearMiss?: string;
  maxCrashes?: string;
  compareAcrossClasses?: boolean;
  json?: boolean;
}

/** `tag create`: sets a tag's policy (metric, direction, thresholds); creates the tag if new. */
export async function tagCreateCommand(tag: string, options: TagCreateOptions): Promise<void> {
  const policy: Partial<TagPolicy> = {};
  if (options.metric) policy.metricName = options.metric;
  if (options.maximize !== undefined) policy.direction = options.maximize ? 'maximize' : 'minimize';
  if (options.nearMiss !== undefined) policy.nearMissThreshold = Number(options.nearMiss);
  if (options.maxCrashes !== undefined) policy.maxConsecutiveCrashes = Number(options.maxCrashes);
  if (options.compareAcrossClasses !== undefined) policy.compareAcrossClasses = options.compareAcrossClasses;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(tag)) throw new CliError(`tag "${tag}" must be letters, digits, "_", "." or "-" (at most 64)`);
  const client = await connectClient();
  const state = await client.workflow.executeUpdateWithStart(configureTagUpdate, {
    args: [policy],
    startWorkflowOperation: new WithStartWorkflowOperation(tagWorkflow, {
      workflowId: tagWorkflowId(tag),
      taskQueue: CONTROL_TASK_QUEUE,
      args: [tag, newTagState(tag)],
      workflowIdConflictPolicy: 'USE_EXISTING',
    }),
  });
  if (wantsJson(options)) return printJson(state);
  console.log(`tag ${tag}: ${state.policy.metricName} (${state.policy.direction}), near miss within ${state.policy.nearMissThreshold}, abort after ${state.policy.maxConsecutiveCrashes} crashes, compare ${state.policy.compareAcrossClasses ? 'across classes' : 'within an accelerator class'}`);
}

export async function tagShowCommand(tag: string, options: { json?: boolean }): Promise<void> {
  const client = await connectClient();
  let state;
  try {
    state = await client.workflow.getHandle(tagWorkflowId(tag)).query(tagStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) throw new CliError(`no tag ${tag} (it is created by its first experiment or \`expctl tag create\`)`);
    throw error;
  }
  if (wantsJson(options)) return printJson(state);
  const { counts } = state;
  console.log(`tag ${tag}: ${counts.total} runs, ${counts.kept} kept, ${counts.discarded} discarded, ${counts.crashed} crashed, ${counts.nearMisses} near misses; ${state.consecutiveCrashes} consecutive crashes`);
  console.log(formatTable(['group', 'best', 'experiment', 'commit'], Object.entries(state.best).map(([group, best]) => [group, best.metric, best.experimentId, best.commit.slice(0, 7)])));
}
