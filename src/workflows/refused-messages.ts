import {
  ApplicationFailure,
  log,
  proxyActivities,
  workflowInfo,
  type WorkflowInterceptorsFactory,
} from '@temporalio/workflow';
import type { createRefusedMessageActivities } from '../activities/refused-messages.js';
import { PAYLOAD_REFUSED, refusalAmong, refusalOf, type RefusedPayload } from '../shared/refused-payload.js';
import { CONTROL_ACTIVITY } from './control-retry.js';
import { REFUSED_MESSAGES_QUERY, type RefusedMessage, type RefusedMessages } from './definitions.js';

/** The latest refusals a workflow keeps in its answer (the audit trail keeps them all). */
const RECENT_KEPT = 10;

const auditor = proxyActivities<ReturnType<typeof createRefusedMessageActivities>>(CONTROL_ACTIVITY);

/**
 * Every workflow's guard against messages it cannot read (registered with the workflow bundle,
 * roots/orchestrator.ts). The workers' codec turns a refused payload into a placeholder
 * (shared/refused-payload.ts); here a signal or update carrying one is dropped before any handler
 * sees it, counted (the refusedMessages query) and audited with its sender's Temporal identity,
 * and a start input carrying one ends the workflow at once with the named failure payload_refused.
 * A child workflow's result never comes back as a placeholder unnoticed: it fails loudly.
 */
export const interceptors: WorkflowInterceptorsFactory = () => {
  const answer: RefusedMessages = { count: 0, recent: [] };
  const waiting: RefusedMessage[] = [];
  /** Audits run one after another, each covering the history after the last one matched. */
  let auditing: Promise<void> = Promise.resolve();
  let auditedThrough = 0;

  const flush = async () => {
    const refused = waiting.splice(0);
    if (refused.length === 0) return;
    const { workflowId, runId } = workflowInfo();
    try {
      const { matchedThrough } = await auditor.auditRefusedMessages({
        workflowId,
        runId,
        afterEventId: auditedThrough,
        refused,
      });
      auditedThrough = Math.max(auditedThrough, matchedThrough);
    } catch (error) {
      // The drop stands; only its audit line is missing, and the workflow says so in its log.
      log.error('could not audit a refused message', { error: (error as Error).message });
    }
  };
  const refuse = (kind: RefusedMessage['kind'], name: string, refusal: RefusedPayload): Promise<void> => {
    const message: RefusedMessage = { kind, name, reason: refusal.reason, at: new Date().toISOString() };
    answer.count++;
    answer.recent = [...answer.recent, message].slice(-RECENT_KEPT);
    log.warn('dropped a message whose payload the codec refused', { kind, name, reason: refusal.message });
    waiting.push(message);
    auditing = auditing.then(flush);
    return auditing;
  };
  const refusedFailure = (what: string, refusal: RefusedPayload) =>
    ApplicationFailure.nonRetryable(
      `${PAYLOAD_REFUSED}: ${what} could not be decoded, so it was dropped (${refusal.message})`,
      PAYLOAD_REFUSED,
    );

  return {
    inbound: [
      {
        async execute(input, next) {
          const refusal = refusalAmong(input.args);
          if (!refusal) return next(input);
          await refuse('start', workflowInfo().workflowType, refusal);
          throw refusedFailure(`the start input of ${workflowInfo().workflowId}`, refusal);
        },
        async handleSignal(input, next) {
          const refusal = refusalAmong(input.args);
          if (!refusal) return next(input);
          await refuse('signal', input.signalName, refusal);
        },
        validateUpdate(input, next) {
          // Accepted, so that its drop is in the history (counted, audited) and its caller hears why.
          if (!refusalAmong(input.args)) next(input);
        },
        async handleUpdate(input, next) {
          const refusal = refusalAmong(input.args);
          if (!refusal) return next(input);
          await refuse('update', input.name, refusal);
          throw refusedFailure(`the update ${input.name}`, refusal);
        },
        async handleQuery(input, next) {
          if (input.queryName === REFUSED_MESSAGES_QUERY) return answer;
          const refusal = refusalAmong(input.args);
          if (refusal) throw refusedFailure(`the query ${input.queryName}`, refusal);
          return next(input);
        },
      },
    ],
    outbound: [
      {
        async startChildWorkflowExecution(input, next) {
          const [started, completed] = await next(input);
          const checked = completed.then((result) => {
            const refusal = refusalOf(result);
            if (refusal)
              throw new Error(`the result of child workflow ${input.options.workflowId}: ${refusal.message}`);
            return result;
          });
          // A child whose result its parent never awaits (the pool's host liveness watches) must not fail the parent.
          void checked.catch(() => undefined);
          return [started, checked];
        },
      },
    ],
  };
};
