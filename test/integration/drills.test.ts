import { beforeAll, describe, expect, it } from 'vitest';
import { formatReport, runDrills, type DrillReport } from '../../scripts/drills/run.js';

/**
 * The short version of `npm run drills` for CI: the cheap rows, on a stack of their own (a dev
 * server this file starts and restarts, the orchestrator and a worker per row as processes).
 * Rows whose fault a test of its own already makes on every run are left to `npm run drills`:
 * worker-kill (worker-loss.test.ts), terminate-while-training and pool-terminated
 * (terminate.test.ts), plaintext-and-forged-signals (refused-messages.test.ts). So are the outage,
 * flood, binary and long-run rows (long-run alone takes about 100 s: a run, its host killed, the
 * fence wait and the resume).
 */
const CI_ROWS = ['orchestrator-kill', 'server-restart', 'duplicate-keys', 'escape', 'kill-supervisor', 'long-line'];

let report: DrillReport;

beforeAll(async () => {
  report = await runDrills({ quick: true, rows: CI_ROWS, log: () => undefined });
  console.log(formatReport(report));
}, 900_000);

describe('the quick fault drills', () => {
  it.each(CI_ROWS)('%s: nothing lost, duplicated or orphaned, and the expected terminal states', (name) => {
    const row = report.rows.find((r) => r.row === name);
    expect(row, `no report for ${name}`).toBeDefined();
    expect(row!.error, row!.notes.join('\n')).toBeUndefined();
    expect(row!.submitted).toBeGreaterThan(0);
    const counts = { lost: row!.lost, duplicated: row!.duplicated, orphaned: row!.orphaned, wrong: row!.wrong };
    expect(counts, row!.notes.join('\n')).toEqual({ lost: 0, duplicated: 0, orphaned: 0, wrong: 0 });
    // Every run reached a terminal state (none is left as 'none').
    expect(Object.values(row!.states).reduce((a, b) => a + b, 0)).toBe(row!.submitted);
    expect(row!.states.none).toBeUndefined();
  });
});
