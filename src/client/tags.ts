import { WithStartWorkflowOperation, WorkflowNotFoundError, type Client } from '@temporalio/client';
import { newTagState, type TagPolicy, type TagState } from '../domain/decision.js';
import { TAG_TASK_QUEUE } from '../shared/constants.js';
import { configureTagUpdate, tagStateQuery } from '../workflows/definitions.js';
import { tagWorkflow, tagWorkflowId } from '../workflows/tag.js';
import { signAs } from './sign.js';

/** An operator's signed change of a tag's policy; creates the tag if new. Returns its state after. */
export async function configureTag(client: Client, tag: string, policy: Partial<TagPolicy>): Promise<TagState> {
  return client.workflow.executeUpdateWithStart(configureTagUpdate, {
    args: [policy, signAs('configure_tag', tagWorkflowId(tag), policy)],
    startWorkflowOperation: new WithStartWorkflowOperation(tagWorkflow, {
      workflowId: tagWorkflowId(tag),
      taskQueue: TAG_TASK_QUEUE,
      args: [tag, newTagState(tag)],
      workflowIdConflictPolicy: 'USE_EXISTING',
    }),
  });
}

/** A tag's state (best, counts, policy), or undefined for a tag that does not exist yet. */
export async function tagState(client: Client, tag: string): Promise<TagState | undefined> {
  try {
    return await client.workflow.getHandle(tagWorkflowId(tag)).query(tagStateQuery);
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return undefined;
    throw error;
  }
}
