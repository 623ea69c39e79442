import { describe, expect, it } from 'vitest';
import { LeaseMessenger, type BatchAnswer } from '../../src/activities/lease-messages.js';
import { leaseMessagesProblem, leaseReleaseProblem, leaseRequestProblem } from '../../src/domain/lease-request.js';
import type { Lease, LeaseMessages } from '../../src/workflows/definitions.js';

const request = (experimentId: string) => ({
  experimentId,
  requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] },
  priority: 0,
});

const lease = (experimentId: string) => ({ leaseId: `lease-${experimentId}`, experimentId }) as Lease;

/** A pool stand-in whose answers the test releases by hand, so batches can be seen forming. */
function heldPool() {
  const sent: LeaseMessages[] = [];
  const answers: ((answer: BatchAnswer) => void)[] = [];
  const send = (batch: LeaseMessages) => {
    sent.push(batch);
    return new Promise<BatchAnswer>((resolve) => answers.push(resolve));
  };
  return { sent, answers, send };
}

describe('LeaseMessenger', () => {
  it('sends a message at once when none is on its way, and gathers the rest into the next batch', async () => {
    const pool = heldPool();
    const told: string[] = [];
    const messenger = new LeaseMessenger(pool.send, async (granted) => void told.push(granted.experimentId));
    const first = messenger.request(request('a'));
    const second = messenger.request(request('b'));
    const released = messenger.release({ experimentId: 'z' });
    const third = messenger.request(request('c'));
    expect(pool.sent).toEqual([{ releases: [], requests: [request('a')] }]);
    pool.answers[0]!({ answers: [{ lease: lease('a') }], granted: [] });
    expect(await first).toEqual({ lease: lease('a') });
    await new Promise((resolve) => setImmediate(resolve));
    expect(pool.sent[1]).toEqual({ releases: [{ experimentId: 'z' }], requests: [request('b'), request('c')] });
    pool.answers[1]!({ answers: [{ queued: true }, { lease: lease('c') }], granted: [lease('y')] });
    expect(await second).toEqual({ queued: true });
    expect(await third).toEqual({ lease: lease('c') });
    await released;
    await new Promise((resolve) => setImmediate(resolve));
    // The release's grant to a run outside the batch is told by the caller, not the pool.
    expect(told).toEqual(['y']);
    expect(pool.sent).toHaveLength(2);
  });

  it('fails every message of a batch the pool refused, and sends the next batch anyway', async () => {
    let calls = 0;
    const messenger = new LeaseMessenger(
      async (batch) => {
        calls++;
        if (calls === 1) throw new Error('pool unreachable');
        return { answers: batch.requests.map(() => ({ queued: true as const })), granted: [] };
      },
      async () => undefined,
    );
    await expect(messenger.request(request('a'))).rejects.toThrow('pool unreachable');
    expect(await messenger.request(request('b'))).toEqual({ queued: true });
  });
});

describe('lease message checks', () => {
  it('name what is wrong with a malformed request, release or batch', () => {
    expect(leaseRequestProblem(request('a'))).toBeNull();
    expect(leaseRequestProblem({ ...request('a'), priority: 'high' })).toMatch(/^malformed lease request: priority: /);
    expect(leaseRequestProblem(null)).toMatch(/^malformed lease request: /);
    expect(leaseReleaseProblem({ experimentId: 'a', leaseId: 'l' })).toBeNull();
    expect(leaseReleaseProblem({ experimentId: '' })).toMatch(/^malformed lease release: experimentId: /);
    expect(leaseMessagesProblem({ releases: [], requests: [request('a')] })).toBeNull();
    expect(leaseMessagesProblem({ releases: [{}], requests: [] })).toMatch(
      /^malformed lease messages: releases\.0\.experimentId: /,
    );
  });
});
