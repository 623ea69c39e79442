import { ServiceError } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { isConnectionError, ServerLink, watchServer } from '../../src/shared/server-link.js';
import { waitFor } from '../helpers/wait.js';

/** The shape grpc-js gives a call that found no server (code 14, UNAVAILABLE). */
function unreachable(): Error {
  const cause = Object.assign(new Error('14 UNAVAILABLE: No connection established'), {
    code: 14,
    details: 'No connection established. Last error: Error: connect ECONNREFUSED 10.0.0.5:7233. Resolution note: ',
  });
  return new ServiceError('Failed to signal Workflow', { cause });
}

describe('ServerLink', () => {
  it('tells when the server is lost and why, reminds each minute, and tells when it is back', () => {
    const lines: string[] = [];
    let now = 1_000_000;
    const link = new ServerLink(
      'expctl worker h1',
      '10.0.0.5:7233',
      (line) => lines.push(line),
      () => now,
    );

    link.reached();
    expect(lines).toEqual([]);

    link.failed(unreachable());
    expect(link.lost).toBe(true);
    expect(lines).toEqual([
      'expctl worker h1: lost the Temporal server at 10.0.0.5:7233: No connection established. ' +
        'Last error: Error: connect ECONNREFUSED 10.0.0.5:7233; runs already started go on and keep ' +
        'their results here until it is back; retrying',
    ]);
    // Heartbeats every few seconds do not repeat it ...
    now += 30_000;
    link.failed(unreachable());
    expect(lines).toHaveLength(1);
    // ... but a minute later the operator hears it is still away.
    now += 31_000;
    link.failed(unreachable());
    expect(lines[1]).toMatch(
      /^expctl worker h1: still no Temporal server at 10\.0\.0\.5:7233 after 61 s: .*ECONNREFUSED/,
    );

    now += 4000;
    link.reached();
    expect(link.lost).toBe(false);
    expect(lines[2]).toBe('expctl worker h1: reconnected to the Temporal server at 10.0.0.5:7233 after 65 s');
    link.reached();
    expect(lines).toHaveLength(3);
  });

  it("says a call that ran out of time had no answer, not gRPC's internals", () => {
    const lines: string[] = [];
    const link = new ServerLink('expctl worker h1', 'h:7233', (line) => lines.push(line));
    const cause = Object.assign(new Error('4 DEADLINE_EXCEEDED'), {
      code: 4,
      details: 'Deadline exceeded after 0.000s,waiting for metadata filters',
    });
    link.failed(new ServiceError('Failed to signal Workflow', { cause }));
    expect(lines[0]).toMatch(/lost the Temporal server at h:7233: no answer before the call's deadline; runs/);
  });

  it('counts only unreachable-server errors as a lost link', () => {
    expect(isConnectionError(unreachable())).toBe(true);
    expect(isConnectionError(Object.assign(new Error('deadline'), { code: 4 }))).toBe(true);
    // NOT_FOUND (a workflow that is gone) is an answer from the server, not a lost link.
    expect(
      isConnectionError(new ServiceError('no such workflow', { cause: Object.assign(new Error(), { code: 5 }) })),
    ).toBe(false);
    expect(isConnectionError(new Error('plain'))).toBe(false);
  });
});

describe('watchServer', () => {
  it("probes a process's server and tells the link; answers that are refusals are not a lost link", async () => {
    const lines: string[] = [];
    const link = new ServerLink('expctl orchestrator', 'h:7233', (line) => lines.push(line));
    const answers: (() => Promise<unknown>)[] = [
      () => Promise.reject(new ServiceError('refused', { cause: Object.assign(new Error(), { code: 7 }) })),
      () => Promise.reject(unreachable()),
      () => Promise.reject(unreachable()),
      () => Promise.resolve({}),
    ];
    let probes = 0;
    const stop = watchServer(() => answers[Math.min(probes++, answers.length - 1)]!(), link, 10);
    try {
      await waitFor(async () => lines.length === 2, 10_000);
    } finally {
      stop();
    }
    expect(lines[0]).toMatch(/^expctl orchestrator: lost the Temporal server at h:7233: .*ECONNREFUSED/);
    expect(lines[1]).toMatch(/^expctl orchestrator: reconnected to the Temporal server at h:7233 after \d+ s$/);
  });
});
