import {
  allHandlersFinished,
  condition,
  continueAsNew,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { createCatalogActivities } from '../activities/catalog.js';
import { applyOutcome, newTagState, type TagState } from '../domain/decision.js';
import { tagPolicyProblem } from '../domain/tag-policy.js';
import { strategyChangeProblem } from '../domain/strategy.js';
import { CONTROL_ACTIVITY } from './control-retry.js';
import {
  configureTagUpdate,
  recordBatchUpdate,
  recordOutcomeUpdate,
  setStrategyUpdate,
  tagStateQuery,
} from './definitions.js';
import { applyTournament } from '../domain/tournament.js';
import { requirePermission } from './authorize.js';
import { HISTORY_EVENTS_LIMIT } from '../domain/limits.js';

const catalog = proxyActivities<ReturnType<typeof createCatalogActivities>>({
  ...CONTROL_ACTIVITY,
  retry: { initialInterval: '1s', maximumAttempts: 5 },
});

export function tagWorkflowId(tag: string): string {
  return `expctl-tag-${tag}`;
}

/**
 * One durable home per tag for keep/discard state. Update handlers are synchronous, so N
 * experiments finishing together are applied one at a time, in the order the server accepted them.
 */
export async function tagWorkflow(tag: string, carried?: TagState): Promise<void> {
  let state = carried ?? newTagState(tag);

  setHandler(tagStateQuery, () => state);
  setHandler(recordOutcomeUpdate, (outcome) => {
    // An activity retry must not count the same experiment twice.
    const earlier = state.recent.find((decision) => decision.experimentId === outcome.experimentId);
    if (earlier) return earlier;
    const next = applyOutcome(state, outcome);
    state = next.state;
    return next.decision;
  });
  setHandler(recordBatchUpdate, ({ outcomes }) => {
    // A retried activity, or a child decided alone before: such a child keeps its earlier decision.
    const earlier = new Map(
      state.recent
        .filter((decision) => outcomes.some((o) => o.experimentId === decision.experimentId))
        .map((decision) => [decision.experimentId, decision]),
    );
    const verdict = applyTournament(
      state,
      outcomes.filter((o) => !earlier.has(o.experimentId)),
    );
    state = verdict.state;
    const decided = new Map(verdict.decisions.map((d) => [d.experimentId, d]));
    const keptBefore = [...earlier.values()].find((d) => d.decision === 'keep');
    const winner =
      verdict.winner ??
      (keptBefore
        ? {
            experimentId: keptBefore.experimentId,
            commit: outcomes.find((o) => o.experimentId === keptBefore.experimentId)!.commit,
            metric: keptBefore.metric!,
          }
        : null);
    return { decisions: outcomes.map((o) => earlier.get(o.experimentId) ?? decided.get(o.experimentId)!), winner };
  });
  setHandler(
    configureTagUpdate,
    async (policy, authorization) => {
      await requirePermission({
        authorization,
        action: 'configure_tag',
        target: tagWorkflowId(tag),
        content: policy,
        acceptedAt: new Date().toISOString(),
      });
      state = { ...state, policy: { ...state.policy, ...policy } };
      return state;
    },
    {
      validator: (policy, _authorization) => {
        const problem = tagPolicyProblem(policy);
        if (problem) throw new Error(problem);
      },
    },
  );

  // The mode lives in the catalog (the rule moves it after every decision); an operator's choice
  // reaches it through here, signed and checked like a policy change.
  setHandler(
    setStrategyUpdate,
    async (change, authorization) => {
      await requirePermission({
        authorization,
        action: 'configure_tag',
        target: tagWorkflowId(tag),
        content: change,
        acceptedAt: new Date().toISOString(),
      });
      return catalog.setTagStrategy({ tag, change });
    },
    {
      validator: (change, _authorization) => {
        const problem = strategyChangeProblem(change);
        if (problem) throw new Error(problem);
      },
    },
  );

  await condition(() => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > HISTORY_EVENTS_LIMIT);
  await condition(allHandlersFinished);
  await continueAsNew<typeof tagWorkflow>(tag, state);
}
