import { describe, expect, it } from 'vitest';
import { StallWatch } from '../../src/client/pool-supervisor.js';
import { ConfigurationError, poolStallRepairMs } from '../../src/shared/settings.js';

describe('when a stalled pool is repaired by the orchestrator', () => {
  it('only after its task has failed at every look for the whole grace, counted per run', () => {
    const watch = new StallWatch(60_000);
    expect(watch.due('run-a', true, 0)).toBe(false);
    expect(watch.due('run-a', true, 59_999)).toBe(false);
    expect(watch.due('run-a', true, 60_000)).toBe(true);
    // A task that completed in between (a timed-out task retried once) starts the count again.
    watch.reset();
    expect(watch.due('run-a', true, 61_000)).toBe(false);
    expect(watch.due('run-a', false, 100_000)).toBe(false);
    expect(watch.due('run-a', true, 130_000)).toBe(false);
    // A new run (the repaired one) stalls from its own start.
    expect(watch.due('run-b', true, 190_000)).toBe(false);
    expect(watch.due('run-b', true, 250_000)).toBe(true);
  });

  it('never, when the operator keeps that for themselves', () => {
    const watch = new StallWatch(null);
    expect(watch.due('run-a', true, 0)).toBe(false);
    expect(watch.due('run-a', true, 10_000_000)).toBe(false);
  });

  it('after EXPCTL_POOL_STALL_REPAIR_SECONDS, a minute by default, never at 0, and refuses a bad value', () => {
    expect(poolStallRepairMs({})).toBe(60_000);
    expect(poolStallRepairMs({ EXPCTL_POOL_STALL_REPAIR_SECONDS: '5' })).toBe(5_000);
    expect(poolStallRepairMs({ EXPCTL_POOL_STALL_REPAIR_SECONDS: '0' })).toBeNull();
    expect(() => poolStallRepairMs({ EXPCTL_POOL_STALL_REPAIR_SECONDS: 'soon' })).toThrow(ConfigurationError);
    expect(() => poolStallRepairMs({ EXPCTL_POOL_STALL_REPAIR_SECONDS: '-1' })).toThrow(
      /EXPCTL_POOL_STALL_REPAIR_SECONDS must be a number of seconds/,
    );
  });
});
