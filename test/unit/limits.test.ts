import { describe, expect, it } from 'vitest';
import {
  budgetOverrunSeconds,
  HOST_ANSWER_SECONDS,
  HOST_RECONNECT_SECONDS,
  hostAnswerSeconds,
  killLimitSeconds,
  leaseHoldSeconds,
  TRAIN_HEARTBEAT_TIMEOUT_SECONDS,
} from '../../src/domain/limits.js';

describe('limits', () => {
  it('kills at twice the training budget unless --timeout says otherwise (program.md: 10 minutes for 5)', () => {
    expect(killLimitSeconds({ timeBudgetSeconds: 300 })).toBe(600);
    expect(killLimitSeconds({ timeBudgetSeconds: 300, timeoutSeconds: 900 })).toBe(900);
    // A short budget keeps a fixed headroom for startup and evaluation.
    expect(killLimitSeconds({ timeBudgetSeconds: 6 })).toBe(66);
    expect(killLimitSeconds({ timeBudgetSeconds: 6, timeoutSeconds: 8 })).toBe(8);
  });

  it('holds a lease at most its setup limit plus its kill limit (what backfill counts on)', () => {
    expect(leaseHoldSeconds({ setupTimeoutSeconds: 900, timeBudgetSeconds: 300 })).toBe(1500);
    expect(leaseHoldSeconds({ setupTimeoutSeconds: 60, timeBudgetSeconds: 300, timeoutSeconds: 400 })).toBe(460);
  });

  it('reports a training overrun past a step of slack, as autoresearch stops at a step boundary', () => {
    expect(budgetOverrunSeconds(300, 300.1)).toBeNull();
    expect(budgetOverrunSeconds(300, 305.9)).toBeNull();
    expect(budgetOverrunSeconds(300, 320.4)).toBe(20.4);
    expect(budgetOverrunSeconds(4, 5.5)).toBe(1.5);
    expect(budgetOverrunSeconds(300, null)).toBeNull();
  });

  it("gives a silent run's host a short answer window, and a long one after a server outage", () => {
    const sent = Date.parse('2026-11-27T00:00:00Z');
    const at = (seconds: number) => sent + seconds * 1000;
    const lastBeat = new Date(sent).toISOString();
    // Reported on time: the worker went quiet.
    expect(hostAnswerSeconds(lastBeat, at(TRAIN_HEARTBEAT_TIMEOUT_SECONDS))).toBe(HOST_ANSWER_SECONDS);
    expect(hostAnswerSeconds(lastBeat, at(TRAIN_HEARTBEAT_TIMEOUT_SECONDS + 5))).toBe(HOST_ANSWER_SECONDS);
    // Reported long after: the server's timers fired on its return, no worker could heartbeat.
    expect(hostAnswerSeconds(lastBeat, at(TRAIN_HEARTBEAT_TIMEOUT_SECONDS + 6))).toBe(HOST_RECONNECT_SECONDS);
    expect(hostAnswerSeconds(lastBeat, at(45))).toBe(HOST_RECONNECT_SECONDS);
    // No heartbeat time (a worker of an older version, or a task that never heartbeated).
    expect(hostAnswerSeconds(undefined, at(10))).toBe(HOST_RECONNECT_SECONDS);
    expect(hostAnswerSeconds('not a time', at(10))).toBe(HOST_RECONNECT_SECONDS);
    expect(HOST_ANSWER_SECONDS).toBeLessThan(5);
  });
});
