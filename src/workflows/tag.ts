import {
  allHandlersFinished,
  condition,
  continueAsNew,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { createCatalogActivities } from '../activities/catalog.js';
import { applyOutcome, guardProblem, newTagState, type GuardRule, type TagState } from '../domain/decision.js';
import { ENV_NAME_PATTERN, ENV_NAME_TEXT } from '../domain/environment.js';
import { MAX_CONSECUTIVE_CRASHES, MAX_GUARD_CHARS, MAX_GUARDS } from '../domain/bounds.js';
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
      // Tags configured before credentials replay without the check.
      if (patched('authorize-configure')) {
        await requirePermission({
          authorization,
          action: 'configure_tag',
          target: tagWorkflowId(tag),
          content: policy,
          acceptedAt: new Date().toISOString(),
        });
      }
      state = { ...state, policy: { ...state.policy, ...policy } };
      return state;
    },
    {
      validator: (policy, _authorization) => {
        if (policy.nearMissThreshold !== undefined && !(policy.nearMissThreshold >= 0))
          throw new Error('nearMissThreshold must be >= 0');
        if (
          policy.maxConsecutiveCrashes !== undefined &&
          !(
            Number.isInteger(policy.maxConsecutiveCrashes) &&
            policy.maxConsecutiveCrashes >= 1 &&
            policy.maxConsecutiveCrashes <= MAX_CONSECUTIVE_CRASHES
          )
        ) {
          throw new Error(`maxConsecutiveCrashes must be a whole number from 1 to ${MAX_CONSECUTIVE_CRASHES}`);
        }
        if (
          policy.minImprovement !== undefined &&
          !(Number.isFinite(policy.minImprovement) && policy.minImprovement >= 0)
        ) {
          throw new Error('minImprovement must be a finite number >= 0');
        }
        if (policy.nearMissThreshold !== undefined && !Number.isFinite(policy.nearMissThreshold))
          throw new Error('nearMissThreshold must be finite');
        if (policy.guards !== undefined) {
          const guards: GuardRule[] = policy.guards;
          if (!Array.isArray(guards)) throw new Error('guards must be a list');
          if (guards.length > MAX_GUARDS) throw new Error(`a tag has at most ${MAX_GUARDS} guards`);
          if (guards.some((guard) => typeof guard?.value === 'string' && guard.value.length > MAX_GUARD_CHARS))
            throw new Error(`a guard has at most ${MAX_GUARD_CHARS} characters`);
          const problem = guards.map((guard) => guardProblem(guard)).find((p) => p !== null);
          if (problem) throw new Error(problem);
        }
        if (policy.allowEnv !== undefined) {
          const names: unknown = policy.allowEnv;
          if (!Array.isArray(names) || names.some((name) => typeof name !== 'string' || !ENV_NAME_PATTERN.test(name)))
            throw new Error(`allowEnv must be a list of environment variable names (${ENV_NAME_TEXT})`);
        }
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
