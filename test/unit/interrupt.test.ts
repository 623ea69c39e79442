import { describe, expect, it } from 'vitest';
import { interruptedReport } from '../../src/cli/interrupt.js';

describe('the report of an interrupted wait', () => {
  it('still names the run and how to pick it up when its state cannot be read', () => {
    expect(interruptedReport({ kind: 'experiment', id: 'exp-a-1' }, new Error('no answer within 5 s'))).toEqual({
      error: 'interrupted',
      message:
        'interrupted; experiment exp-a-1 goes on (unknown) (its state could not be read: no answer within 5 s): `expctl wait exp-a-1` picks it up again',
      experiment_id: 'exp-a-1',
      status: null,
      resume: 'expctl wait exp-a-1',
    });
    expect(interruptedReport({ kind: 'batch', id: 'batch-a-1' }, new Error('down'))).toMatchObject({
      batch_id: 'batch-a-1',
      status: null,
      resume: 'expctl wait batch-a-1',
    });
  });
});
