import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { poolStateQuery } from '../../src/workflows/definitions.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { eventsSince, eventTypeCounts, workflowTasks, onlyTook } from '../helpers/event-counts.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

/**
 * What a run costs in history events, bounded so it cannot creep back: the experiment's own
 * history, what its tag adds, and what the pool adds per run over a stream through few slots.
 */
const EXPERIMENT_EVENTS_MAX = 25;
const TAG_EVENTS_PER_RUN_MAX = 5;
/**
 * Issue 31's bound. A message to the pool is an update (accepted, completed) in a workflow task of
 * 3 events. Requests are batched while one is on its way; a run's end needs no message when a run
 * was lined up behind it (its worker hands the slot on by itself): only every other run through a
 * busy slot ends with a release, whose pass grants the next run and lines up the one after.
 */
const POOL_EVENTS_PER_RUN_MAX = 6;

/** The worker's registration heartbeat: the pool's cost per host, not per run (and gone with per-host liveness). */
const HOST_HEARTBEAT_SIGNALS = ['registerHost'];

let stack: TestStack;
let source: { repo: string; commit: string };
/** Training that waits for a file the test creates (gated_train.py). */
let gated: { repo: string; commit: string };

function request(tag: string, valBpb: string, repo = source, env: Record<string, string> = {}): ExperimentRequestInput {
  return {
    tag,
    hypothesis: 'event bounds',
    category: 'hyperparams',
    command: ['python3', 'train.py'],
    repo: repo.repo,
    commit: repo.commit,
    timeBudgetSeconds: 30,
    env: { VAL_BPB: valBpb, ...env },
  };
}

async function runToEnd(tag: string, valBpb: string): Promise<string> {
  const { handle, experimentId } = await submitExperiment(stack.client, request(tag, valBpb));
  expect(await handle.result()).toMatchObject({ status: 'completed' });
  return experimentId;
}

async function historyLength(workflowId: string): Promise<number> {
  return (await stack.client.workflow.getHandle(workflowId).fetchHistory()).events?.length ?? 0;
}

beforeAll(async () => {
  stack = await startStack({ name: 'event-bounds', host: 'boundhost', cpuSlots: 2 });
  source = await makeRepo();
  gated = await makeRepo({}, path.join(FIXTURES, 'scripts', 'gated_train.py'));
});
afterAll(async () => stack?.stop());

describe('the events a plain completed run writes', () => {
  it(`are at most ${EXPERIMENT_EVENTS_MAX} in its history, and its tag adds at most ${TAG_EVENTS_PER_RUN_MAX}`, async () => {
    // The first run starts the tag; the second is the plain run of a tag that exists.
    await runToEnd('bounds', '1.500000');
    const tagBefore = await historyLength(tagWorkflowId('bounds'));
    const experimentId = await runToEnd('bounds', '1.400000');
    const events = (await stack.client.workflow.getHandle(experimentId).fetchHistory()).events ?? [];
    const tagAdded = (await historyLength(tagWorkflowId('bounds'))) - tagBefore;
    console.log(
      `experiment history: ${events.length} events (bound ${EXPERIMENT_EVENTS_MAX}) ${JSON.stringify(eventTypeCounts(events))}`,
    );
    console.log(`tag history: +${tagAdded} events for the run (bound ${TAG_EVENTS_PER_RUN_MAX})`);
    expect(events.length).toBeLessThanOrEqual(EXPERIMENT_EVENTS_MAX);
    expect(tagAdded).toBeGreaterThan(0);
    expect(tagAdded).toBeLessThanOrEqual(TAG_EVENTS_PER_RUN_MAX);
  });

  it(`add at most ${POOL_EVENTS_PER_RUN_MAX} to the pool's history per run, over a stream through few slots`, async () => {
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    const { runId, historyLength: afterEventId } = await pool.describe();
    // Eight runs at once through the host's two slots: six of them wait (two lined up behind the
    // running ones, four in the queue). The first two train until all eight have asked, so the
    // stream is one through few slots however slowly a loaded host validates the burst.
    const runs = 8;
    const gate = path.join(stack.workDir, 'bounds-stream-gate');
    const submitted = await Promise.all(
      Array.from({ length: runs }, (_, i) =>
        submitExperiment(
          stack.client,
          request('bounds-stream', `1.${i}00000`, gated, {
            GATE_FILE: gate,
            STARTED_FILE: path.join(stack.workDir, `bounds-stream-started-${i}`),
          }),
        ),
      ),
    );
    await waitFor(async () => {
      const { slots, queue } = await pool.query(poolStateQuery);
      const waiting = queue.length + slots.filter((entry) => entry.next).length;
      return slots.every((entry) => entry.lease) && waiting === runs - slots.length;
    }, 120_000);
    await fs.writeFile(gate, '');
    for (const { handle } of submitted) expect(await handle.result()).toMatchObject({ status: 'completed' });
    const events = await eventsSince(stack.client, POOL_WORKFLOW_ID, { runId, afterEventId });
    const tasks = workflowTasks(events);
    const heartbeatTasks = tasks.filter((task) => onlyTook(task, HOST_HEARTBEAT_SIGNALS));
    const heartbeatEvents = heartbeatTasks.reduce((sum, task) => sum + task.events.length, 0);
    const runEvents = events.length - heartbeatEvents;
    const runTasks = tasks.filter((task) => !heartbeatTasks.includes(task)).flatMap((task) => task.events);
    // Which messages the runs cost: requests (leaseMessages batches) and releases (releaseLease).
    const updates: Record<string, number> = {};
    for (const event of runTasks) {
      const name = event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name;
      if (name) updates[name] = (updates[name] ?? 0) + 1;
    }
    console.log(
      `pool history: ${events.length} events over ${runs} runs; ${heartbeatEvents} in ${heartbeatTasks.length} tasks that only took host heartbeats; ` +
        `${runEvents} for the runs = ${(runEvents / runs).toFixed(2)} per run (bound ${POOL_EVENTS_PER_RUN_MAX}) ${JSON.stringify(eventTypeCounts(runTasks))} updates ${JSON.stringify(updates)}`,
    );
    expect(runEvents).toBeGreaterThan(0);
    expect(runEvents / runs).toBeLessThanOrEqual(POOL_EVENTS_PER_RUN_MAX);
  });
});
