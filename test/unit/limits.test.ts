import { describe, expect, it } from 'vitest';
import { budgetOverrunSeconds, killLimitSeconds } from '../../src/domain/limits.js';

describe('limits', () => {
  it('kills at twice the training budget unless --timeout says otherwise (program.md: 10 minutes for 5)', () => {
    expect(killLimitSeconds({ timeBudgetSeconds: 300 })).toBe(600);
    expect(killLimitSeconds({ timeBudgetSeconds: 300, timeoutSeconds: 900 })).toBe(900);
    // A short budget keeps a fixed headroom for startup and evaluation.
    expect(killLimitSeconds({ timeBudgetSeconds: 6 })).toBe(66);
    expect(killLimitSeconds({ timeBudgetSeconds: 6, timeoutSeconds: 8 })).toBe(8);
  });

  it('reports a training overrun past a step of slack, as autoresearch stops at a step boundary', () => {
    expect(budgetOverrunSeconds(300, 300.1)).toBeNull();
    expect(budgetOverrunSeconds(300, 305.9)).toBeNull();
    expect(budgetOverrunSeconds(300, 320.4)).toBe(20.4);
    expect(budgetOverrunSeconds(4, 5.5)).toBe(1.5);
    expect(budgetOverrunSeconds(300, null)).toBeNull();
  });
});
