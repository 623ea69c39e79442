import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { leaseRounds, type LeaseQuestion } from '../../src/gpu-worker/lease-rounds.js';

describe("a host's lease checks asked in rounds", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('asks every question of a round in one query and gives each its own answer', async () => {
    const queries: LeaseQuestion[][] = [];
    const { held } = leaseRounds(async (questions) => {
      queries.push(questions);
      return questions.map((q) => (q.slotId === 'gone' ? false : q.slotId === 'unknown' ? null : true));
    }, 2500);
    const answers = Promise.all([
      held('gpu0', 'a'),
      held('gone', 'b'),
      held('unknown', 'c'),
      held('gpu0', 'a'), // the same lease twice in a round is one question
    ]);
    await vi.advanceTimersByTimeAsync(2499);
    expect(queries).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(await answers).toEqual([true, false, null, true]);
    expect(queries).toEqual([
      [
        { slotId: 'gpu0', leaseId: 'a' },
        { slotId: 'gone', leaseId: 'b' },
        { slotId: 'unknown', leaseId: 'c' },
      ],
    ]);
    // The next question opens the next round.
    const next = held('gpu1', 'd');
    await vi.advanceTimersByTimeAsync(2500);
    expect(await next).toBe(true);
    expect(queries).toHaveLength(2);
  });

  it('fails every question of a round the pool did not answer, and the next round asks again', async () => {
    let calls = 0;
    const { held } = leaseRounds(async (questions) => {
      if (++calls === 1) throw new Error('deadline exceeded');
      return questions.map(() => true);
    }, 1000);
    const first = Promise.allSettled([held('gpu0', 'a'), held('gpu1', 'b')]);
    await vi.advanceTimersByTimeAsync(1000);
    expect((await first).map((r) => (r.status === 'rejected' ? (r.reason as Error).message : r.value))).toEqual([
      'deadline exceeded',
      'deadline exceeded',
    ]);
    const again = held('gpu0', 'a');
    await vi.advanceTimersByTimeAsync(1000);
    expect(await again).toBe(true);
  });

  it('answers null, neither yes nor no, where the pool gave fewer answers than questions', async () => {
    const { held } = leaseRounds(async () => [true], 10);
    const answers = Promise.all([held('gpu0', 'a'), held('gpu1', 'b')]);
    await vi.advanceTimersByTimeAsync(10);
    expect(await answers).toEqual([true, null]);
  });
});
