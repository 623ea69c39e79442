import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { healthCheckWorkflow } from '../../src/workflows/health.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { configurePool, FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { resultWithin, waitFor } from '../helpers/wait.js';
import { temporalCli } from '../helpers/temporal-cli.js';
import { fileExists } from '../helpers/files.js';

/** The pool's heartbeat limit here: a terminated holder's slot must be free within it + 5 s. */
const LIMIT_MS = 6_000;

let stack: TestStack;
let source: { repo: string; commit: string };

beforeAll(async () => {
  stack = await startStack({ name: 'terminate', host: 'termhost', cpuSlots: 1 });
  source = await makeRepo();
  await configurePool(stack.client, { heartbeatLimitMs: LIMIT_MS });
});
afterAll(async () => {
  await stack?.stop();
});

const submit = (hypothesis: string, env: Record<string, string>) =>
  submitExperiment(stack.client, {
    tag: 'terminate',
    hypothesis,
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 120,
    env,
  });

/** `temporal workflow terminate`, as an operator (or the Web UI's Terminate) does it. */
const terminateWithCli = (workflowId: string, reason: string, identity?: string) =>
  temporalCli(stack, ['workflow', 'terminate', '--workflow-id', workflowId, '--reason', reason], identity);

describe('an experiment terminated from outside expctl', () => {
  it('frees its slot within the heartbeat limit + 5 s, stops its training and audits the release', async () => {
    const pidFile = path.join(stack.workDir, 'terminated-train.pid');
    const victim = await submit('terminated while training', { MODE: 'slow', PID_FILE: pidFile });
    await waitFor(
      async () => (await victim.handle.query(experimentStateQuery)).status === 'running' && (await fileExists(pidFile)),
      60_000,
    );
    const trainingPid = Number(await fs.readFile(pidFile, 'utf8'));

    // As an operator's Terminate (Web UI or CLI) does it: the workflow ends with no word to expctl.
    const cli = terminateWithCli(victim.experimentId, 'operator stop', 'operator-on-call@ops-laptop');
    const terminated = await cli;
    expect(terminated.exitCode, terminated.all).toBe(0);
    const terminatedAt = Date.now();

    const next = await submit('placed on the freed slot', { VAL_BPB: '1.25' });
    expect(await resultWithin(next.handle, 120_000)).toMatchObject({ status: 'completed', worker: 'termhost' });
    // When the slot was the next run's, from its own timeline: a quickly stopped victim lets it run
    // and finish between two looks at the pool.
    const { timeline } = await next.handle.query(experimentStateQuery);
    const freedAfter = Date.parse(timeline.find((event) => event.status === 'running')!.at) - terminatedAt;
    expect(freedAfter).toBeLessThan(LIMIT_MS + 5_000);
    // The worker stopped the terminated run's processes: its train task found the workflow gone.
    await waitFor(async () => !processAlive(trainingPid), 20_000);

    const audit = (await stack.catalog.auditTrail(victim.experimentId)).filter(
      (entry) => entry.action === 'lease_released',
    );
    expect(audit).toEqual([
      expect.objectContaining({
        // The CLI (1.5.1) does not pass --identity to the SDK client that terminates: the server
        // records that client's default identity, which names the CLI's process and host.
        actor: `${cli.pid}@${os.hostname()}@`,
        detail: `lease on termhost/cpu0 released by the pool: its workflow was terminated by Temporal identity "${cli.pid}@${os.hostname()}@" (reason: operator stop)`,
      }),
    ]);
    // Its record ends with it: canceled, by whom and why, never "running" for ever.
    expect(await stack.catalog.get(victim.experimentId)).toMatchObject({
      status: 'canceled',
      reason: expect.stringMatching(/^terminated from outside expctl: its workflow was terminated by .*operator stop/),
    });
    console.log(`terminated holder's slot served the next run after ${(freedAfter / 1000).toFixed(1)} s`);
  });

  it('drops terminated runs from the queue and from behind the lease, and ends their records, while the slot serves the others', async () => {
    const pidFile = path.join(stack.workDir, 'queue-holder.pid');
    const training = await submit('holds the only slot', { MODE: 'slow', PID_FILE: pidFile });
    await waitFor(async () => (await training.handle.query(experimentStateQuery)).status === 'running', 60_000);
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    // The first to wait is lined up behind the running lease; the second waits in the queue.
    const linedUp = await submit('terminated while it is lined up', { VAL_BPB: '1.25' });
    const isLinedUp = async () =>
      (await pool.query(poolStateQuery)).slots.some((entry) => entry.next?.lease.experimentId === linedUp.experimentId);
    await waitFor(isLinedUp, 60_000);
    const waiting = await submit('terminated while it waits in the queue', { VAL_BPB: '1.25' });
    const inQueue = async () =>
      (await pool.query(poolStateQuery)).queue.some((request) => request.experimentId === waiting.experimentId);
    await waitFor(inQueue, 60_000);

    // The queued one first: a holder check between the two terminations would otherwise line it
    // up in the place the first one left (the pool cannot know it is terminated yet).
    for (const run of [waiting, linedUp]) {
      const terminated = await terminateWithCli(run.experimentId, 'no longer wanted');
      expect(terminated.exitCode, terminated.all).toBe(0);
    }
    const terminatedAt = Date.now();
    await waitFor(async () => !(await inQueue()) && !(await isLinedUp()), LIMIT_MS + 5_000);
    expect(Date.now() - terminatedAt).toBeLessThan(LIMIT_MS + 5_000);
    for (const run of [linedUp, waiting])
      expect(await stack.catalog.get(run.experimentId)).toMatchObject({
        status: 'canceled',
        reason: expect.stringContaining('no longer wanted'),
      });
    expect((await stack.catalog.auditTrail(waiting.experimentId)).map((entry) => entry.detail)).toContainEqual(
      expect.stringMatching(/^place in the queue released by the pool: its workflow was terminated by/),
    );
    expect((await stack.catalog.auditTrail(linedUp.experimentId)).map((entry) => entry.detail)).toContainEqual(
      expect.stringMatching(/^place lined up on termhost\/\S+ released by the pool: its workflow was terminated by/),
    );
    // The holder of the slot is untouched by it.
    expect((await training.handle.query(experimentStateQuery)).status).toBe('running');
    await training.handle.cancel();
    await waitFor(async () => !processAlive(Number(await fs.readFile(pidFile, 'utf8'))), 30_000);
  });

  it('ends the record of a run terminated while it held no slot nor queue place, at the next health check', async () => {
    const waiting = await submitExperiment(stack.client, {
      tag: 'terminate',
      hypothesis: 'terminated while it waits for data',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      timeBudgetSeconds: 60,
      datasets: ['nobody-adds@latest'],
      waitForDataSeconds: 3600,
      env: {},
    });
    await waitFor(async () => (await waiting.handle.query(experimentStateQuery)).status === 'waiting_for_data', 60_000);
    const terminated = await terminateWithCli(waiting.experimentId, 'data will not come');
    expect(terminated.exitCode, terminated.all).toBe(0);
    expect((await stack.catalog.get(waiting.experimentId))?.status).toBe('waiting_for_data');

    // What the health Schedule runs every minute.
    await stack.client.workflow.execute(healthCheckWorkflow, {
      workflowId: `health-${Date.now()}`,
      taskQueue: CONTROL_TASK_QUEUE,
    });
    expect(await stack.catalog.get(waiting.experimentId)).toMatchObject({
      status: 'canceled',
      reason: expect.stringContaining('data will not come'),
    });
    expect(await stack.catalog.auditTrail(waiting.experimentId)).toContainEqual(
      expect.objectContaining({
        action: 'temporal_terminate',
        detail: expect.stringMatching(/^terminated while waiting_for_data: its workflow was terminated by/),
      }),
    );
  });

  it('passes on the lease of a holder that ended after its worker handed the slot on, and audits no release', async () => {
    const gated = await makeRepo({}, path.join(FIXTURES, 'scripts', 'gated_train.py'));
    const [startedA, gateA, startedB, gateB] = ['started-a', 'gate-a', 'started-b', 'gate-b'].map((name) =>
      path.join(stack.workDir, `handed-on-${name}`),
    );
    const run = (hypothesis: string, started: string, gate: string) =>
      submitExperiment(stack.client, {
        tag: 'terminate',
        hypothesis,
        category: 'other',
        command: ['python3', 'train.py'],
        repo: gated.repo,
        commit: gated.commit,
        env: { VAL_BPB: '1.0', STARTED_FILE: started, GATE_FILE: gate },
      });
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    const slot = async () => (await pool.query(poolStateQuery)).slots[0]!;
    const first = await run('hands its slot on', startedA!, gateA!);
    await waitFor(() => fileExists(startedA!), 60_000);
    const second = await run('handed the slot', startedB!, gateB!);
    await waitFor(async () => (await slot()).next?.lease.experimentId === second.experimentId, 60_000);
    await fs.writeFile(gateA!, '');
    await waitFor(() => fileExists(startedB!), 60_000);
    expect(await first.handle.result()).toMatchObject({ status: 'completed' });
    // The pool heard nothing of the hand-over: its holder check finds the first run closed and
    // passes the lease to the run that trains on the slot, which goes on untouched.
    await waitFor(async () => (await slot()).lease?.experimentId === second.experimentId, LIMIT_MS + 5_000);
    expect((await slot()).next ?? null).toBeNull();
    expect((await second.handle.query(experimentStateQuery)).status).toBe('running');
    expect((await stack.catalog.auditTrail(first.experimentId)).map((entry) => entry.action)).not.toContain(
      'lease_released',
    );
    await fs.writeFile(gateB!, '');
    expect(await second.handle.result()).toMatchObject({ status: 'completed', gpu: 'termhost/cpu0' });
    await waitFor(async () => (await slot()).lease === null, 30_000);
  });

  it('re-creates a terminated pool (its worker or the orchestrator): the training run and the queued one both complete', async () => {
    const training = await submit('trains while the pool is terminated', {
      VAL_BPB: '1.5',
      STEPS: '60',
      STEP_SECONDS: '0.2',
    });
    await waitFor(async () => (await training.handle.query(experimentStateQuery)).status === 'running', 60_000);
    // The only slot is taken: this one waits, lined up behind the running lease.
    const queued = await submit('waits in the queue of the terminated pool', { VAL_BPB: '1.25' });
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    await waitFor(
      async () =>
        (await pool.query(poolStateQuery)).slots.some(
          (entry) => entry.next?.lease.experimentId === queued.experimentId,
        ),
      60_000,
    );

    const terminated = await terminateWithCli(POOL_WORKFLOW_ID, 'operator mistake');
    expect(terminated.exitCode, terminated.all).toBe(0);

    // Started again with the lease of the run it trains.
    const gone = (await pool.describe()).runId;
    await waitFor(async () => {
      const running = await pool.describe();
      if (running.runId === gone || running.status.name !== 'RUNNING') return false;
      const state = await pool.query(poolStateQuery);
      return (
        state.hosts.termhost?.online === true &&
        state.slots.some((entry) => entry.lease?.experimentId === training.experimentId)
      );
    }, 30_000);
    // Whichever comes first starts it: the worker at its next heartbeat, or the orchestrator's supervisor.
    expect([...stack.workerLog, ...stack.orchestratorLog].join('\n')).toMatch(
      /the pool was gone; started it again with termhost's registration and 1 live lease\(s\)|the pool was terminated; started it again with its last state \(1 host\(s\), 1 lease\(s\)\)/,
    );
    const trained = await resultWithin(training.handle, 120_000);
    expect(trained).toMatchObject({ status: 'completed', metric: 1.5 });
    expect((await training.handle.query(experimentStateQuery)).attempts).toBe(1);
    // The queued run asked the new pool again (every 30 s) and was placed.
    expect(await resultWithin(queued.handle, 120_000)).toMatchObject({ status: 'completed', metric: 1.25 });
  });
});
