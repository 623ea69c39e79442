import { ActivityCancelledError, ActivityNotFoundError } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { createLivenessActivities, type LivenessBeat } from '../../src/activities/liveness.js';
import { HostConfirmations } from '../../src/gpu-worker/host-confirmations.js';

describe('HostConfirmations', () => {
  it('confirms only the epoch a run was followed in, and only while that epoch lasts', () => {
    const host = new HostConfirmations(100);
    expect(host.current()).toBeUndefined();
    const first = host.begin();
    expect(host.current()).toBe(first);
    // Nothing accepted yet: the run asks the pool.
    expect(host.confirmedIn(first)).toBeUndefined();
    host.confirmed(first, 1_000);
    host.confirmed(first, 900); // a late answer to an earlier heartbeat moves nothing back
    expect(host.confirmedIn(first)).toBe(1_000);
    // The pool watch asks less often only while the heartbeats are accepted.
    expect(host.confirmedWithin(500, 1_400)).toBe(true);
    expect(host.confirmedWithin(500, 1_500)).toBe(false);
    // Accepted now: within two heartbeat periods (100 ms here).
    expect(host.acceptedNow(1_150)).toBe(true);
    expect(host.acceptedNow(1_250)).toBe(false);
    expect(host.confirmedIn(undefined)).toBeUndefined();
    // The activity was taken away (the host was lost, or its limit changed): its runs ask the pool again.
    host.end(first);
    expect(host.confirmedIn(first)).toBeUndefined();
    expect(host.confirmedWithin(500, 1_400)).toBe(false);
    expect(host.current()).toBeUndefined();
    const second = host.begin();
    host.confirmed(second, 2_000);
    host.confirmed(first, 3_000); // the old epoch confirms nothing any more
    expect(host.confirmedIn(first)).toBeUndefined();
    expect(host.confirmedIn(second)).toBe(2_000);
    // A new activity while the old one is still ending: the old one's end does not end the new epoch.
    const third = host.begin();
    host.end(second);
    expect(host.current()).toBe(third);
  });
});

describe('keepHostAlive with acknowledged heartbeats', () => {
  const deps = (heartbeat: (beat: LivenessBeat) => Promise<void>, confirmations: HostConfirmations) =>
    createLivenessActivities({
      host: 'h',
      incarnation: 'i',
      heartbeatMs: 10,
      stopping: new AbortController().signal,
      acknowledged: { heartbeat: (_token, beat) => heartbeat(beat as LivenessBeat), confirmations },
    });

  it('confirms the host with each heartbeat the server accepted, from its sending time', async () => {
    const confirmations = new HostConfirmations(100);
    const sent: number[] = [];
    // What the host's runs were confirmed by when each heartbeat went out.
    const confirmedWhenSent: (number | undefined)[] = [];
    const liveness = deps(async (beat) => {
      confirmedWhenSent.push(confirmations.confirmedIn(confirmations.current()));
      sent.push(beat.at);
      // The third heartbeat gets no answer (a cut link): it confirms nothing, and the loop goes on.
      if (sent.length === 3) throw new Error('deadline exceeded');
      // Not found: the liveness workflow is done with this activity (the host was taken for lost).
      if (sent.length === 5) throw new ActivityNotFoundError('Not found');
    }, confirmations);
    await expect(
      new MockActivityEnvironment().run(liveness.keepHostAlive, { host: 'h', incarnation: 'i' }),
    ).rejects.toBeInstanceOf(CancelledFailure);
    expect(sent).toHaveLength(5);
    expect(confirmedWhenSent).toEqual([undefined, sent[0], sent[1], sent[1], sent[3]]);
    // Its epoch ended with it: its runs ask the pool again.
    expect(confirmations.current()).toBeUndefined();
    expect(confirmations.confirmedIn(1)).toBeUndefined();
  });

  it('ends when the server says the activity was canceled (its limit changed)', async () => {
    const confirmations = new HostConfirmations(100);
    const liveness = deps(async () => {
      throw new ActivityCancelledError('cancelled');
    }, confirmations);
    await expect(
      new MockActivityEnvironment().run(liveness.keepHostAlive, { host: 'h', incarnation: 'i' }),
    ).rejects.toBeInstanceOf(CancelledFailure);
    expect(confirmations.current()).toBeUndefined();
  });
});
