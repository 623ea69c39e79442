import { describe, expect, it } from 'vitest';
import { askUntilAnswered } from '../../src/activities/training.js';

describe('a lease question the pool did not answer', () => {
  it('is asked again, and the first answer decides', async () => {
    const answers: (boolean | Error)[] = [new Error('deadline exceeded'), false];
    let asked = 0;
    const ask = async () => {
      const next = answers[asked++]!;
      if (next instanceof Error) throw next;
      return next;
    };
    expect(await askUntilAnswered(ask, 3, 1)).toBe(false);
    expect(asked).toBe(2);
  });

  it('throws the last error once its tries are spent', async () => {
    let asked = 0;
    const ask = async (): Promise<boolean> => {
      asked++;
      throw new Error(`deadline exceeded ${asked}`);
    };
    await expect(askUntilAnswered(ask, 3, 1)).rejects.toThrow('deadline exceeded 3');
    expect(asked).toBe(3);
  });
});
