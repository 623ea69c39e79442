import fs from 'node:fs/promises';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import type { ExperimentSnapshot } from '../../src/workflows/experiment-state.js';
import { healthCheckWorkflow } from '../../src/workflows/health.js';
import { leaseCyclerWorkflow } from '../../src/workflows/lease-cycler.js';
import { configurePool, drain, FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { runCli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';
import { makeRepo } from '../helpers/repo.js';

let source: { repo: string; commit: string };
beforeAll(async () => {
  source = await makeRepo();
});

function request(overrides: Partial<ExperimentRequestInput> & { tag: string }): ExperimentRequestInput {
  return {
    hypothesis: 'h',
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 60,
    env: { VAL_BPB: '1.0' },
    ...overrides,
  };
}

async function runAll(
  stack: TestStack,
  inputs: ExperimentRequestInput[],
): Promise<{ result: ExperimentResult; state: ExperimentSnapshot }[]> {
  const submitted = await Promise.all(inputs.map((input) => submitExperiment(stack.client, input)));
  return Promise.all(
    submitted.map(async ({ handle }) => ({
      result: await handle.result(),
      state: await handle.query(experimentStateQuery),
    })),
  );
}

describe('8 GPUs, 20 experiments', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ name: 'eight', host: 'node8', fleet: 'eight-a100.csv' });
  });
  afterAll(async () => stack?.stop());

  it('never runs more than 8 at once, never shares a GPU, and runs them in parallel', async () => {
    const runs = await runAll(
      stack,
      Array.from({ length: 20 }, () =>
        request({ tag: 'eight', env: { VAL_BPB: '1.0', STEPS: '20', STEP_SECONDS: '0.25' } }),
      ),
    );
    // On a failure the message carries each run's reason and log tail: what a flake needs to be found.
    const failures = runs.filter((r) => r.result.status !== 'completed');
    const evidence = failures.map((r) => ({
      id: r.result.experiment_id,
      reason: r.result.reason,
      exit: r.state.training?.exitCode,
      tail: r.state.training?.logTail?.slice(-600),
    }));
    expect(
      runs.map((r) => r.result.status),
      JSON.stringify(evidence, null, 2),
    ).toEqual(Array(20).fill('completed'));
    const intervals = runs.map(({ state }) => ({
      gpu: state.gpu!,
      start: Date.parse(state.training!.startedAt),
      end: Date.parse(state.training!.endedAt),
    }));
    // No GPU held by two runs at once, from the records.
    for (const gpu of new Set(intervals.map((i) => i.gpu))) {
      const onGpu = intervals.filter((i) => i.gpu === gpu).sort((a, b) => a.start - b.start);
      for (let i = 1; i < onGpu.length; i++) expect(onGpu[i]!.start).toBeGreaterThanOrEqual(onGpu[i - 1]!.end);
    }
    // Concurrency from the same records: at most 8, and all 8 used.
    const events = intervals
      .flatMap(
        (i) =>
          [
            [i.start, 1],
            [i.end, -1],
          ] as const,
      )
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let running = 0;
    let peak = 0;
    for (const [, delta] of events) peak = Math.max(peak, (running += delta));
    expect(peak).toBeLessThanOrEqual(8);
    expect(new Set(intervals.map((i) => i.gpu)).size).toBe(8);
    const longest = Math.max(...intervals.map((i) => i.end - i.start));
    const span = Math.max(...intervals.map((i) => i.end)) - Math.min(...intervals.map((i) => i.start));
    console.log(
      `20 runs on 8 GPUs: span ${(span / 1000).toFixed(1)} s, longest run ${(longest / 1000).toFixed(1)} s, ${(span / longest).toFixed(2)} rounds`,
    );
    // 20 runs on 8 GPUs need 3 rounds; one at a time would take 20. How close to 3 it gets depends on the
    // machine's load (the figure above, and the bench, say it); the test only rules out serialized runs.
    expect(span).toBeLessThan(8 * longest);
  });
});

describe('a mixed fleet', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ name: 'mixed', host: 'mix', fleet: 'mixed.csv' });
  });
  afterAll(async () => stack?.stop());

  it('places by class and memory, protects the scarce class, explains every placement', async () => {
    const [h100, big, small] = await runAll(stack, [
      request({ tag: 'mixed', requirements: { acceleratorClass: 'h100', gpuMemoryMb: 0, runtimeTags: [] } }),
      request({ tag: 'mixed', requirements: { acceleratorClass: 'any', gpuMemoryMb: 30_000, runtimeTags: [] } }),
      request({ tag: 'mixed', requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] } }),
    ]);
    expect(h100!.state.placement).toMatchObject({
      acceleratorClass: 'h100',
      policy: 'scarce class h100 requested by name',
    });
    expect(big!.state.placement?.acceleratorClass).toBe('a100');
    expect(small!.state.placement?.acceleratorClass).toBe('l4');
    const record = small!.state.placement!;
    expect(record.candidates).toHaveLength(8);
    expect(
      record.candidates
        .filter((c) => c.acceleratorClass === 'h100')
        .every((c) => /reserved for requests that name it/.test(c.rejected ?? '')),
    ).toBe(true);
    expect(record.why).toMatch(/least capable of \d free slots that fit/);
    expect(
      big!.state
        .placement!.candidates.filter((c) => c.acceleratorClass === 'l4')
        .every((c) => /23034 MB < 30000 MB requested/.test(c.rejected ?? '')),
    ).toBe(true);
  });

  it('gives a scarce class to what only it can serve, and refuses what nothing can, naming the flag', async () => {
    const [onlyH100, tooBig, noSuchClass] = await runAll(stack, [
      request({ tag: 'mixed', requirements: { acceleratorClass: 'any', gpuMemoryMb: 60_000, runtimeTags: [] } }),
      request({ tag: 'mixed', requirements: { acceleratorClass: 'any', gpuMemoryMb: 100_000, runtimeTags: [] } }),
      request({ tag: 'mixed', requirements: { acceleratorClass: 'b200', gpuMemoryMb: 0, runtimeTags: [] } }),
    ]);
    expect(onlyH100!.result.status).toBe('completed');
    expect(onlyH100!.state.placement?.acceleratorClass).toBe('h100');
    expect(onlyH100!.state.placement?.policy).toBe(
      'scarce class h100 used for any: no other class in the fleet can serve the request',
    );
    expect(tooBig!.result.status).toBe('validation_failed');
    expect(tooBig!.result.reason).toMatch(/pass --gpu-mem \d+ or less/);
    expect(noSuchClass!.result.reason).toMatch(
      /no slot in the fleet can ever satisfy accelerator=b200.*pass --gpu-class with one of them/,
    );
  });

  it('a health check drains a GPU at a critical temperature and returns it when it recovers', async () => {
    // A second host whose fake nvidia-smi reads a file this test rewrites.
    const fleetFile = path.join(stack.workDir, 'hot.csv');
    await fs.copyFile(path.join(FIXTURES, 'fleets', 'two-l4.csv'), fleetFile);
    await stack.addGpuWorker({ host: 'hot', fleet: fleetFile });
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    await waitFor(async () => (await pool.query(poolStateQuery)).hosts.hot?.online === true, 20_000);
    const check = () =>
      stack.client.workflow.execute(healthCheckWorkflow, {
        workflowId: `health-${Date.now()}`,
        taskQueue: CONTROL_TASK_QUEUE,
      });

    const csv = await fs.readFile(fleetFile, 'utf8');
    await fs.writeFile(fleetFile, csv.replace(/^(1, (?:[^,]*, ){5})\d+/m, '$195'));
    const verdicts = await check();
    expect(verdicts.find((v) => v.host === 'hot')?.problems).toEqual([
      { slotId: 'hot/gpu1', reason: 'temperature 95 C >= 90 C' },
    ]);
    let state = await pool.query(poolStateQuery);
    expect(state.slots.find((s) => s.slot.slotId === 'hot/gpu1')).toMatchObject({
      draining: true,
      drainReason: 'health: temperature 95 C >= 90 C',
      drainedBy: 'health',
    });
    expect(state.slots.find((s) => s.slot.slotId === 'hot/gpu0')?.draining).toBe(false);

    await fs.writeFile(fleetFile, csv);
    await check();
    state = await pool.query(poolStateQuery);
    expect(state.slots.find((s) => s.slot.slotId === 'hot/gpu1')).toMatchObject({ draining: false, drainedBy: null });
    expect(state.health.hot?.report.gpus.map((g) => g.temperatureC)).toEqual([40, 41]);
  });
});

describe('drain', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ name: 'drain', host: 'pair', fleet: 'two-l4.csv' });
  });
  afterAll(async () => stack?.stop());

  it('lets the running experiment finish and gives the drained GPU no new lease', async () => {
    const slow = await submitExperiment(
      stack.client,
      request({ tag: 'drain', env: { VAL_BPB: '1.0', STEPS: '15', STEP_SECONDS: '0.2' } }),
    );
    await waitFor(async () => (await slow.handle.query(experimentStateQuery)).status === 'running', 30_000);
    const drainedGpu = (await slow.handle.query(experimentStateQuery)).gpu!;
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    await drain(stack.client, drainedGpu, true, 'maintenance');
    const later = await runAll(stack, [
      request({ tag: 'drain', env: { VAL_BPB: '1.0', STEPS: '5', STEP_SECONDS: '0.2' } }),
      request({ tag: 'drain', env: { VAL_BPB: '1.0', STEPS: '5', STEP_SECONDS: '0.2' } }),
    ]);
    expect((await slow.handle.result()).status).toBe('completed');
    expect(later.map((r) => r.result.status)).toEqual(['completed', 'completed']);
    expect(later.map((r) => r.state.gpu)).not.toContain(drainedGpu);
    const state = await pool.query(poolStateQuery);
    expect(state.slots.find((s) => s.slot.slotId === drainedGpu)).toMatchObject({
      draining: true,
      // The reason as given, and which identity drained it.
      drainReason: expect.stringMatching(/^maintenance \(by [^)]+\)$/),
      lease: null,
    });
  });
});

describe('fair share between campaigns', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ name: 'fair', host: 'share', fleet: 'two-l4.csv' });
  });
  afterAll(async () => stack?.stop());

  it('gives freed GPUs to the campaign with less recent GPU time, though it queued later', async () => {
    const releases = [0, 1].map((i) => path.join(stack.workDir, `release-agent-a-${i}`));
    // hold.py finishes (with the usual summary) once the test creates its RELEASE_FILE.
    const held = await makeRepo({
      'hold.py': [
        'import os, time',
        `while not os.path.exists(os.environ["RELEASE_FILE"]):`,
        '    time.sleep(0.05)',
        'print("---")',
        'print("val_bpb:          1.000000")',
        '',
      ].join('\n'),
    });
    const run = (tag: string, releaseFile?: string) =>
      submitExperiment(
        stack.client,
        // A held run must outlast a slow test on a loaded host: no kill limit before the release.
        request({
          tag,
          ...(releaseFile
            ? {
                ...held,
                command: ['python3', 'hold.py'],
                timeoutSeconds: 3600,
                env: { VAL_BPB: '1.0', RELEASE_FILE: releaseFile },
              }
            : {}),
        }),
      );
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    // Agent A takes both GPUs until the test lets its first two runs finish; three more of its runs
    // wait: two lined up behind the held runs (one per GPU, handed the GPU at their exit), one queued.
    const holding = await Promise.all(releases.map((file) => run('agent-a', file)));
    await waitFor(async () => (await pool.query(poolStateQuery)).slots.every((entry) => entry.lease), 60_000);
    const behind = [await run('agent-a'), await run('agent-a'), await run('agent-a')];
    const lined = (slots: { next?: { lease: { experimentId: string } } | null }[]) =>
      slots.flatMap((entry) => (entry.next ? [entry.next.lease.experimentId] : []));
    await waitFor(async () => {
      const { slots, queue } = await pool.query(poolStateQuery);
      return lined(slots).length === 2 && queue.length === 1;
    }, 60_000);
    const linedUp = new Set(lined((await pool.query(poolStateQuery)).slots));
    const waitingA = behind.filter((r) => !linedUp.has(r.experimentId));
    // Agent B asks later, while A holds the fleet.
    const waitingB = [await run('agent-b'), await run('agent-b')];
    await waitFor(async () => (await pool.query(poolStateQuery)).queue.length === 3, 60_000);
    // `show` gives the position in the order the pool serves: B, which has had no GPU time, first.
    const cli = {
      TEMPORAL_ADDRESS: stack.address,
      TEMPORAL_NAMESPACE: stack.namespace,
      EXPCTL_CATALOG: stack.catalogPath,
    };
    const position = async ({ experimentId }: { experimentId: string }) =>
      JSON.parse(String((await runCli(cli, ['show', experimentId, '--json'])).stdout)).queue_position;
    // (Each tag in its own arrival order, which validation on a loaded host may swap.)
    const positions = async (runs: { experimentId: string }[]) =>
      (await Promise.all(runs.map(position))).map((p: { position: number; length: number }) => p.position).sort();
    expect(await positions(waitingB)).toEqual([1, 2]);
    expect(await positions(waitingA)).toEqual([3]);
    // One GPU is freed (the other stays held): the queue goes through it one run at a time, in the
    // order the pool serves it, after the run lined up there.
    await fs.writeFile(releases[0]!, '');
    const results = await Promise.all([...waitingB, ...waitingA].map(({ handle }) => handle.result()));
    await fs.writeFile(releases[1]!, '');
    const linedUpRuns = behind.filter((r) => linedUp.has(r.experimentId));
    results.push(...(await Promise.all([...holding, ...linedUpRuns].map(({ handle }) => handle.result()))));
    expect(results.map((r) => r.status)).toEqual(Array(7).fill('completed'));
    const all = [...holding, ...behind, ...waitingB];
    // First come first served would start A's queued run first; fair share starts B's.
    const started = async ({ handle }: (typeof all)[number]) =>
      Date.parse((await handle.query(experimentStateQuery)).timeline.find((t) => t.status === 'running')!.at);
    const startsB = await Promise.all(waitingB.map(started));
    const startsA = await Promise.all(waitingA.map(started));
    expect(Math.max(...startsB)).toBeLessThanOrEqual(Math.min(...startsA));
    const printed = await runCli(cli, ['pool', '--json']);
    const shares = JSON.parse(String(printed.stdout)).shares as { tag: string; running: number }[];
    expect(shares.map((share) => share.tag).sort()).toEqual(['agent-a', 'agent-b']);
  });
});

/**
 * The cyclers' results; or, once the pool has granted nothing for `stallMs`, a failure that says
 * where the pool and each cycler stand, so a wedge is told apart from a slow machine.
 */
async function resultsUnlessStalled(
  stack: TestStack,
  cyclers: WorkflowHandle<typeof leaseCyclerWorkflow>[],
  stallMs: number,
): Promise<{ cycles: number }[]> {
  const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
  const all = Promise.all(cyclers.map((cycler) => cycler.result()));
  let granted = -1;
  let movedAt = Date.now();
  for (;;) {
    const looked = new Promise<undefined>((resolve) => setTimeout(resolve, 5000, undefined));
    const results = await Promise.race([all, looked]);
    if (results) return results;
    const state = await pool.query(poolStateQuery).catch(() => undefined);
    if (state && state.leasesGranted !== granted) {
      granted = state.leasesGranted;
      movedAt = Date.now();
    }
    if (Date.now() - movedAt < stallMs) continue;
    const statuses = await Promise.all(cyclers.map(async (c) => `${c.workflowId} ${(await c.describe()).status.name}`));
    const slots = state?.slots.map(
      (e) => `${e.slot.slotId}: ${e.lease?.experimentId ?? '-'} next ${e.next?.lease.experimentId ?? '-'}`,
    );
    const hosts = Object.values(state?.hosts ?? {}).map((h) => `${h.host} online ${h.online}`);
    throw new Error(
      `the pool granted nothing for ${stallMs / 1000} s after ${granted} grants: ` +
        JSON.stringify({ slots, queue: state?.queue.map((q) => q.experimentId), hosts, cyclers: statuses }),
    );
  }
}

describe('pool history', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ name: 'bounded', host: 'cycler', cpuSlots: 4 });
  });
  afterAll(async () => stack?.stop());

  it(
    'stays bounded over 300 acquire/release cycles (continue-as-new carries the state)',
    { timeout: 300_000 },
    async () => {
      const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
      await waitFor(
        async () => (await pool.query(poolStateQuery).catch(() => undefined))?.hosts.cycler?.online === true,
        20_000,
      );
      await configurePool(stack.client, { heartbeatLimitMs: 60_000 });
      // Four cyclers share the four slots, as four experiments would: 4 x 75 = 300 cycles, about 2,700
      // events, past the pool's 2,000-event limit: at least one continue-as-new must carry the state.
      const started = Date.now();
      const cyclers = await Promise.all(
        [0, 1, 2, 3].map((i) =>
          stack.client.workflow.start(leaseCyclerWorkflow, {
            workflowId: `cycler-${i}`,
            taskQueue: CONTROL_TASK_QUEUE,
            args: [{ remaining: 75, requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] } }],
          }),
        ),
      );
      const results = await resultsUnlessStalled(stack, cyclers, 90_000);
      expect(results.map((r) => r.cycles)).toEqual([75, 75, 75, 75]);
      console.log(`300 acquire/release cycles in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      const state = await pool.query(poolStateQuery);
      expect(state.leasesGranted).toBe(300);
      expect(state.slots.every((s) => s.lease === null)).toBe(true);
      const runs = [];
      for await (const run of stack.client.workflow.list({ query: `WorkflowId = '${POOL_WORKFLOW_ID}'` }))
        runs.push(run);
      const current = await pool.describe();
      console.log(`pool after 300 cycles: ${runs.length} runs, current history ${current.historyLength} events`);
      expect(runs.length).toBeGreaterThan(1);
      expect(current.historyLength).toBeLessThan(2_500);
    },
  );
});
