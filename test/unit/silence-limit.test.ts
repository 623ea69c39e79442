import { describe, expect, it } from 'vitest';
import { DEFAULT_POOL_HEARTBEAT_MS, MISSED_HEARTBEATS_BEFORE_LOST, silenceLimitMs } from '../../src/domain/fleet.js';

describe('silenceLimitMs (when the pool declares a silent host lost)', () => {
  it("is the pool's limit when the host reports often enough", () => {
    expect(silenceLimitMs(60_000, DEFAULT_POOL_HEARTBEAT_MS)).toBe(60_000);
    expect(silenceLimitMs(8_000, 2_000)).toBe(8_000);
  });

  it('never takes a live host offline between two of its heartbeats', () => {
    // An 8 s limit against a worker reporting every 10 s would flap it offline after every report.
    expect(silenceLimitMs(8_000, 10_000)).toBe(MISSED_HEARTBEATS_BEFORE_LOST * 10_000);
    expect(silenceLimitMs(8_000, 10_000)).toBeGreaterThan(10_000);
  });

  it('keeps the pool limit for older workers that do not say how often they report', () => {
    expect(silenceLimitMs(8_000, undefined)).toBe(8_000);
  });
});
