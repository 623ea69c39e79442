import { describe, expect, it } from 'vitest';
import { InFlightCalls } from '../../src/gpu-worker/in-flight.js';

describe('InFlightCalls: server calls a stopping worker waits for', () => {
  it('settles once every call in flight has ended, answered or failed, and passes each answer on', async () => {
    const calls = new InFlightCalls();
    const releases: (() => void)[] = [];
    const slow = calls.track(
      (answer: boolean, fail: boolean) =>
        new Promise<boolean>((resolve, reject) =>
          releases.push(() => (fail ? reject(new Error('no answer')) : resolve(answer))),
        ),
    );
    const answered = slow(true, false);
    const failed = slow(false, true);
    let settled = false;
    const settling = calls.settled().then(() => (settled = true));
    releases[0]!();
    await expect(answered).resolves.toBe(true);
    await Promise.resolve();
    expect(settled).toBe(false);
    releases[1]!();
    await expect(failed).rejects.toThrow('no answer');
    await settling;
    expect(settled).toBe(true);
    // Nothing in flight: settled at once.
    await calls.settled();
  });
});
