import { describe, expect, it } from 'vitest';
import { repairText } from '../../src/cli/commands/pool.js';

describe('repairText', () => {
  it('says there was nothing to repair', () => {
    expect(
      repairText({
        stalled: false,
        failure: null,
        runId: 'r1',
        repairedRunId: 'r1',
        resetToEventId: null,
        resent: 0,
        dropped: [],
      }),
    ).toBe('the pool is not stalled (run r1): nothing to repair');
  });

  it('names every dropped message with its sender and reason, control characters made visible', () => {
    const text = repairText({
      stalled: true,
      failure: 'TypeError: boom',
      runId: 'r1',
      repairedRunId: 'r3',
      resetToEventId: 42,
      resent: 7,
      dropped: [
        { signal: 'requestLease', eventId: 50, sentBy: 'evil\u001b[2J', reason: "the pool's task failed on it: boom" },
      ],
    });
    expect(text.split('\n')).toEqual([
      'the pool was stalled: TypeError: boom',
      'reset run r1 to its last good workflow task (event 42); it serves as run r3',
      'gave back 7 signal(s); dropped 1',
      expect.stringMatching(/^dropped requestLease \(event 50, sent by evil.*\): the pool's task failed on it: boom$/),
    ]);
    expect(text).not.toContain('\u001b');
  });
});
