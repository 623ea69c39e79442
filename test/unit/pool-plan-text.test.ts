import { describe, expect, it } from 'vitest';
import { planText } from '../../src/cli/commands/pool.js';
import { DEFAULT_PLACEMENT_POLICY, planQueue, type LeaseRequest, type SlotView } from '../../src/domain/placement.js';
import { gpuSlot } from '../helpers/slots.js';

const NOW = Date.parse('2026-12-07T09:00:00Z');

/** An 8-GPU H100 host; GPUs listed in `leased` are held by leases that end at `endsBy`. */
function host(name: string, leased: number[], endsBy: number | null): SlotView[] {
  return Array.from({ length: 8 }, (_, index) =>
    gpuSlot(name, index, {
      nvlinkIsland: index < 4 ? 0 : 1,
      state: leased.includes(index) ? 'leased' : 'idle',
      leaseEndsBy: leased.includes(index) ? endsBy : null,
    }),
  );
}

const ask = (experimentId: string, gpus: number, enqueuedAt: number, holdSeconds?: number): LeaseRequest => ({
  experimentId,
  requirements: { acceleratorClass: 'h100', gpuMemoryMb: 0, runtimeTags: [], gpus },
  priority: 0,
  enqueuedAt,
  ...(holdSeconds !== undefined ? { holdSeconds } : {}),
});

describe("`expctl pool`'s reservations and reasons", () => {
  it('shows the GPUs held for a waiting 8-GPU run, when they free up, and why a later small run waits', () => {
    // Seven GPUs are leased for 10 more minutes: the 8-GPU request reserves the host; a 1-GPU run
    // that would hold its GPU for 17 minutes may not take the one free GPU (it would delay it).
    const slots = host('node-a', [0, 1, 2, 3, 4, 5, 6], NOW + 600_000);
    const plan = planQueue(slots, [ask('big', 8, 1), ask('small', 1, 2, 1020)], DEFAULT_PLACEMENT_POLICY, NOW);
    expect(plan.grants).toEqual([]);
    const text = planText({ reservations: plan.reservations, waiting: plan.waiting, at: NOW });
    const lines = text.split('\n');
    expect(lines[1]).toBe('reservations (1): GPUs held for waiting runs');
    expect(lines[2]).toMatch(/^experiment +host +gpus +slots +starts_by$/);
    const all = Array.from({ length: 8 }, (_, i) => `node-a/gpu${i}`).join(',');
    expect(lines[3]).toMatch(new RegExp(`^big +node-a +8 +${all} +2026-12-07T09:10:00\\.000Z \\(in 10m 0s\\)$`));
    expect(text).toContain('\nwhy each waits:\n');
    expect(text).toMatch(
      /\n {2}big: waits for 8 GPUs .*reserved 8 GPUs of node-a \(0-7: 1 free now, 7 held by leases\)/,
    );
    expect(text).toMatch(/\n {2}small: .*reserved for big .*its lease may last 17m 0s, past that start/);
  });

  it('says nothing when nothing waits', () => {
    expect(planText({ reservations: [], waiting: [], at: NOW })).toBe('');
  });

  it('says a reservation whose leases have no known end starts at an unknown time', () => {
    const plan = planQueue(
      host('node-b', [0, 1, 2, 3, 4, 5, 6, 7], null),
      [ask('big', 8, 1)],
      DEFAULT_PLACEMENT_POLICY,
      NOW,
    );
    const text = planText({ ...plan, at: NOW });
    expect(text).toMatch(/\nbig +node-b +8 +\S+ +unknown\n/);
    expect(text).toContain('estimated start unknown: a lease it waits for has no known end');
  });

  it('escapes control characters in what it prints', () => {
    const text = planText({ reservations: [], waiting: [{ experimentId: 'x', why: 'evil\u001b[2J' }], at: NOW });
    expect(text).not.toContain('\u001b');
  });
});
