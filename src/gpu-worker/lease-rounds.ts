import type { Client } from '@temporalio/client';
import { POOL_WORKFLOW_ID } from '../shared/constants.js';
import { leaseHeldQuery, leasesHeldQuery } from '../workflows/definitions.js';
import type { LeaseHeld } from './kept-runs.js';

export interface LeaseQuestion {
  slotId: string;
  leaseId: string;
}

/** Asks the pool about several leases in one question: an answer for each, in order. */
export type AskLeases = (questions: LeaseQuestion[]) => Promise<(boolean | null)[]>;

interface Asked {
  question: LeaseQuestion;
  answers: { resolve: (held: boolean | null) => void; reject: (error: unknown) => void }[];
}

/** A host's lease questions asked in rounds, and the longest a question waits for its round. */
export interface LeaseRounds {
  held: LeaseHeld;
  roundMs: number;
}

/**
 * A host's periodic lease checks (of the runs no train task follows now: the others are confirmed
 * by the host's acknowledged heartbeats, host-confirmations.ts), asked in rounds: a question waits at most `roundMs` for the
 * round the first one opened, and a round is one pool query however many runs the host trains
 * (every query takes one of the pool's turns: see leaseCheckIntervalMs). A confirmation counts
 * from the moment it was asked, so the wait can only fence a run sooner, never later; the runs
 * ask a round sooner to keep their confirmations as fresh. A question that must be answered now
 * (the last look before a start) asks the pool itself.
 */
export function leaseRounds(ask: AskLeases, roundMs: number): LeaseRounds {
  let asked = new Map<string, Asked>();
  let round: NodeJS.Timeout | undefined;
  const askAll = async () => {
    round = undefined;
    const pending = [...asked.values()];
    asked = new Map();
    try {
      const answers = await ask(pending.map((entry) => entry.question));
      // A missing answer is no answer: nothing confirmed, nothing denied.
      pending.forEach((entry, i) => entry.answers.forEach(({ resolve }) => resolve(answers[i] ?? null)));
    } catch (error) {
      for (const entry of pending) for (const { reject } of entry.answers) reject(error);
    }
  };
  const held: LeaseHeld = (slotId, leaseId) =>
    new Promise((resolve, reject) => {
      const key = `${slotId}\0${leaseId}`;
      const entry = asked.get(key) ?? { question: { slotId, leaseId }, answers: [] };
      entry.answers.push({ resolve, reject });
      asked.set(key, entry);
      round ??= setTimeout(() => void askAll(), roundMs);
    });
  return { held, roundMs };
}

/** The longest one lease question may take: an unanswered one confirms nothing. */
const LEASE_QUESTION_DEADLINE_MS = 10_000;

/** Asks the pool whether a lease still stands, bounded (see LEASE_QUESTION_DEADLINE_MS). */
export function leaseHeldOn(client: Client): LeaseHeld {
  const pool = client.workflow.getHandle(POOL_WORKFLOW_ID);
  return (slotId, leaseId) =>
    client.withDeadline(Date.now() + LEASE_QUESTION_DEADLINE_MS, () => pool.query(leaseHeldQuery, { slotId, leaseId }));
}

/** The pool's answers about several leases in one query, bounded like one (see LEASE_QUESTION_DEADLINE_MS). */
export function leasesHeldOn(client: Client): AskLeases {
  const pool = client.workflow.getHandle(POOL_WORKFLOW_ID);
  return (questions) =>
    client.withDeadline(Date.now() + LEASE_QUESTION_DEADLINE_MS, () => pool.query(leasesHeldQuery, questions));
}
