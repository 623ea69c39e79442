import {
  ApplicationFailure,
  condition,
  ParentClosePolicy,
  proxyActivities,
  setHandler,
  startChild,
  workflowInfo,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import type { createControlActivities } from '../activities/control.js';
import type { RunOutcome, TagDecision } from '../domain/decision.js';
import type { ExperimentResult } from '../domain/experiment.js';
import { batchGitAction, bestAfterBatch } from '../domain/tournament.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';
import { SA } from '../shared/search-attributes.js';
import { requirePermission } from './authorize.js';
import type { BatchInput, BatchResult, BatchSnapshot } from './batch-state.js';
import { batchDecisionSignal, batchMemberEndedSignal, batchStateQuery } from './definitions.js';
import { experimentWorkflow } from './experiment.js';
import { CONTROL_ACTIVITY } from './control-retry.js';

const control = proxyActivities<ReturnType<typeof createControlActivities>>(CONTROL_ACTIVITY);

/** The content a batch's submitter signs (the children carry signatures of their own). */
export function batchSignedContent(input: BatchInput) {
  return {
    batchId: input.batchId,
    tag: input.tag,
    base: input.base,
    members: input.members.map((member) => member.experimentId),
    ...(input.deadline ? { deadline: input.deadline } : {}),
  };
}

/**
 * K variants of one base, run in parallel as ordinary experiments and decided together: when every
 * child has ended (those past the deadline cancel themselves), the tag's workflow applies the
 * tournament in one update, and each child hears its decision and finishes like any run.
 */
export async function batchWorkflow(input: BatchInput): Promise<BatchResult> {
  const snapshot: BatchSnapshot = {
    batchId: input.batchId,
    tag: input.tag,
    base: input.base,
    status: 'running',
    deadline: input.deadline ?? null,
    members: input.members.map((m) => ({ experimentId: m.experimentId, commit: m.request.commit, ended: null })),
    winner: null,
  };
  const ended = new Map<
    string,
    { outcome: RunOutcome; metric: { name: string; direction: 'minimize' | 'maximize' } }
  >();
  /** Children whose workflow failed without reporting (e.g. refused their credential). */
  const failed = new Map<string, string>();
  setHandler(batchStateQuery, () => snapshot);
  setHandler(batchMemberEndedSignal, (report) => {
    const member = snapshot.members.find((m) => m.experimentId === report.outcome.experimentId);
    if (!member || ended.has(member.experimentId)) return;
    ended.set(member.experimentId, report);
    member.ended = report.outcome.status;
  });

  await requirePermission({
    authorization: input.authorization,
    action: 'submit',
    target: input.batchId,
    content: batchSignedContent(input),
    acceptedAt: workflowInfo().startTime.toISOString(),
  });

  // Started together, in one workflow task: one at a time, each start waited a round trip of its own.
  const children: ChildWorkflowHandle<typeof experimentWorkflow>[] = await Promise.all(
    input.members.map((member) => startMember(member, input.batchId)),
  );
  for (const [index, child] of children.entries()) {
    const member = input.members[index]!;
    child.result().catch((error: Error) => {
      const why = error.cause instanceof Error ? error.cause.message : error.message;
      if (!ended.has(member.experimentId)) failed.set(member.experimentId, why);
    });
  }

  await condition(() => ended.size + failed.size === input.members.length);
  snapshot.status = 'deciding';
  const reported = input.members.filter((m) => ended.has(m.experimentId)).map((m) => ended.get(m.experimentId)!);
  let decisions: TagDecision[] = [];
  let winner: { experimentId: string; commit: string; metric: number } | null = null;
  if (reported.length > 0) {
    const verdict = await control.applyBatchOutcomes({
      tag: input.tag,
      batchId: input.batchId,
      metric: reported[0]!.metric,
      outcomes: reported.map((r) => r.outcome),
    });
    decisions = verdict.decisions;
    winner = verdict.winner;
    // Told together: the children record and finish side by side, not one round trip after another.
    await Promise.all(
      decisions.map((decision) =>
        children[input.members.findIndex((m) => m.experimentId === decision.experimentId)]!.signal(
          batchDecisionSignal,
          decision,
        ),
      ),
    );
  }
  const results: ExperimentResult[] = [];
  for (const [index, member] of input.members.entries()) {
    if (failed.has(member.experimentId)) continue;
    results.push(await children[index]!.result());
  }
  if (failed.size > 0) {
    const [id, why] = [...failed][0]!;
    throw ApplicationFailure.nonRetryable(`batch child ${id} failed: ${why}`, undefined);
  }
  snapshot.status = 'decided';
  snapshot.winner = winner?.experimentId ?? null;
  // The tag after the batch: what its last decision says.
  const last = decisions.reduce<TagDecision | undefined>(
    (latest, d) => (latest === undefined || d.sequence > latest.sequence ? d : latest),
    undefined,
  );
  const git = batchGitAction(winner, input.base);
  return {
    batch_id: input.batchId,
    tag: input.tag,
    base: input.base,
    action: git.action,
    commit: git.commit,
    winner: winner?.experimentId ?? null,
    metric_name: reported[0]?.metric.name ?? results[0]?.metric_name ?? '',
    best: bestAfterBatch(winner, decisions),
    consecutive_crashes: last?.consecutiveCrashes ?? 0,
    should_abort: last?.shouldAbort ?? false,
    reason: winner
      ? `${winner.experimentId} kept: advance to ${winner.commit.slice(0, 12)}`
      : `no variant beat the best: reset to the base ${input.base.slice(0, 12)}`,
    children: results,
  };
}

/** Starts one variant as a child experiment of the batch. */
function startMember(member: BatchInput['members'][number], batchId: string) {
  return startChild(experimentWorkflow, {
    workflowId: member.experimentId,
    taskQueue: CONTROL_TASK_QUEUE,
    args: [member],
    // Canceling the batch cancels its children, which still end with a record.
    parentClosePolicy: ParentClosePolicy.REQUEST_CANCEL,
    typedSearchAttributes: [
      { key: SA.tag, value: member.request.tag },
      { key: SA.category, value: member.request.category },
      { key: SA.status, value: 'submitted' },
    ],
    memo: { hypothesis: member.request.hypothesis, commit: member.request.commit, batch: batchId },
  });
}
