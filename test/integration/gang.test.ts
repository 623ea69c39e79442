import fs from 'node:fs/promises';
import path from 'node:path';
import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { poolState } from '../../src/client/fleet.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { experimentStateQuery, type PoolSnapshot } from '../../src/workflows/definitions.js';
import type { ExperimentSnapshot } from '../../src/workflows/experiment-state.js';
import { outputOf, runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { configurePool, FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { eventually, resultWithin, waitFor } from '../helpers/wait.js';
import { startWorkerProcess } from '../helpers/worker-process.js';

/** Multi-GPU runs through the real pool: whole NVLink islands, no starvation, re-placement with K again. */

let source: { repo: string; commit: string };
beforeAll(async () => {
  // Its runs wait for a file the test writes (GO_FILE), so the test decides when each one ends.
  source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'gang_train.py'));
});

function request(
  tag: string,
  gpus: number,
  env: Record<string, string> = {},
  overrides: Partial<ExperimentRequestInput> = {},
): ExperimentRequestInput {
  return {
    tag,
    hypothesis: `${gpus} GPUs`,
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 60,
    requirements: { acceleratorClass: 'h100', gpuMemoryMb: 0, runtimeTags: [], gpus },
    env: { VAL_BPB: '1.0', ...env },
    ...overrides,
  };
}

type Submitted = Awaited<ReturnType<typeof submitExperiment>>;
const stateOf = (run: Submitted): Promise<ExperimentSnapshot> => run.handle.query(experimentStateQuery);

/** Every lease of the pool with the slots that hold it: a gang is one lease on all of its slots. */
function leasesOf(pool: PoolSnapshot): Map<string, { slotIds: string[]; named: string[] | undefined }> {
  const leases = new Map<string, { slotIds: string[]; named: string[] | undefined }>();
  for (const entry of pool.slots) {
    if (!entry.lease) continue;
    const lease = leases.get(entry.lease.leaseId) ?? { slotIds: [], named: entry.lease.slotIds };
    lease.slotIds.push(entry.slot.slotId);
    leases.set(entry.lease.leaseId, lease);
  }
  return leases;
}

describe('an 8-GPU host of two 4-GPU NVLink islands', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack({ name: 'gang', host: 'islands', fleet: 'eight-h100-two-islands.csv' });
  });
  afterAll(async () => stack?.stop());

  it('gives two concurrent 4-GPU runs one whole island each, as one lease of 4 slots each', async () => {
    const go = path.join(stack.workDir, 'islands-go');
    const runs = await Promise.all(
      [0, 1].map(() => submitExperiment(stack.client, request('islands', 4, { GO_FILE: go }))),
    );
    // Both hold their GPUs at once: neither can end before the test writes GO_FILE.
    await waitFor(async () => (await Promise.all(runs.map(stateOf))).every((s) => s.status === 'running'), 120_000);
    const pool = await poolState(stack.client);
    const islandOf = new Map(pool.slots.map((entry) => [entry.slot.slotId, entry.slot.nvlinkIsland]));
    const islands = [...new Set(islandOf.values())];
    expect(islands).toHaveLength(2);
    const states = await Promise.all(runs.map(stateOf));
    const sets = states.map((state) => state.gpus!);
    for (const [i, set] of sets.entries()) {
      expect(set).toHaveLength(4);
      expect(states[i]!.placement?.slotIds).toEqual(set);
      expect(states[i]!.gpu).toBe(set[0]);
      const island = islandOf.get(set[0]!);
      // A whole island: every GPU of it, and nothing else.
      expect(set.map((id) => islandOf.get(id))).toEqual([island, island, island, island]);
      expect([...set].sort()).toEqual(
        pool.slots
          .filter((e) => e.slot.nvlinkIsland === island)
          .map((e) => e.slot.slotId)
          .sort(),
      );
    }
    expect(islandOf.get(sets[0]![0]!)).not.toBe(islandOf.get(sets[1]![0]!));
    // The pool holds each run as one lease on its 4 slots, named on each of them.
    const leases = [...leasesOf(pool).values()];
    expect(leases.map((l) => [...l.slotIds].sort())).toEqual(expect.arrayContaining(sets.map((s) => [...s].sort())));
    for (const lease of leases) expect(lease.named).toEqual(expect.arrayContaining(lease.slotIds));

    await fs.writeFile(go, '');
    const results = await Promise.all(runs.map((run) => resultWithin(run.handle, 120_000)));
    for (const [i, result] of results.entries()) {
      expect(result).toMatchObject({ status: 'completed', gpu: sets[i]![0], gpus: sets[i], worker: 'islands' });
      const record = (await stack.catalog.get(run(i)))!;
      expect(record.gpu).toBe(sets[i]![0]);
      expect(record.placement?.slotIds).toEqual(sets[i]);
      expect(record.placement?.topology).toMatch(/island/);
    }
    function run(i: number): string {
      return runs[i]!.handle.workflowId;
    }
    // Released together: no slot of the host is still leased.
    expect((await poolState(stack.client)).slots.every((e) => e.lease === null)).toBe(true);
  });

  it('packs 1- and 2-GPU runs into one island, keeping the other whole for a 4-GPU run', async () => {
    const go = path.join(stack.workDir, 'packing-go');
    const islandOf = new Map(
      (await poolState(stack.client)).slots.map((entry) => [entry.slot.slotId, entry.slot.nvlinkIsland]),
    );
    const started = async (gpus: number) => {
      const run = await submitExperiment(stack.client, request('packing', gpus, { GO_FILE: go }));
      await waitFor(async () => (await stateOf(run)).status === 'running', 120_000);
      const state = await stateOf(run);
      return { run, set: state.gpus ?? [state.gpu!] };
    };
    // One at a time, so each is placed knowing where the ones before it went.
    const one = await started(1);
    const two = await started(2);
    const four = await started(4);
    const packed = islandOf.get(one.set[0]!);
    expect(two.set.map((id) => islandOf.get(id))).toEqual([packed, packed]);
    const other = islandOf.get(four.set[0]!);
    expect(other).not.toBe(packed);
    expect(four.set.map((id) => islandOf.get(id))).toEqual([other, other, other, other]);
    await fs.writeFile(go, '');
    for (const { run } of [one, two, four]) expect((await resultWithin(run.handle, 120_000)).status).toBe('completed');
  });

  it('starts an 8-GPU request submitted between two waves of 1-GPU runs before any run of the later wave', async () => {
    const gate = (i: number) => path.join(stack.workDir, `wave1-${i}`);
    const first = await Promise.all(
      Array.from({ length: 8 }, (_, i) => submitExperiment(stack.client, request('waves', 1, { GO_FILE: gate(i) }))),
    );
    await waitFor(async () => (await Promise.all(first.map(stateOf))).every((s) => s.status === 'running'), 180_000);
    const big = await submitExperiment(stack.client, request('waves', 8));
    const queued = async (ids: string[]) => {
      const waiting = new Set((await poolState(stack.client)).queue.map((r) => r.experimentId));
      return ids.every((id) => waiting.has(id));
    };
    await waitFor(() => queued([big.handle.workflowId]), 60_000);
    const second = await Promise.all(
      Array.from({ length: 8 }, () => submitExperiment(stack.client, request('waves', 1))),
    );
    await waitFor(() => queued(second.map((r) => r.handle.workflowId)), 60_000);

    // The first wave ends one run at a time: each GPU it frees could go to a later 1-GPU run at once.
    // (A run of it retried after an infrastructure failure on a loaded machine queues again: its
    // GPU is free once it holds no lease, whether or not it has ended.)
    const holds = async (run: Submitted) =>
      (await poolState(stack.client)).slots.some((e) => e.lease?.experimentId === run.handle.workflowId);
    for (const [i, run] of first.entries()) {
      await fs.writeFile(gate(i), '');
      await waitFor(async () => !(await holds(run)), 120_000);
      const later = await Promise.all(second.map(stateOf));
      expect(later.map((s) => s.status)).toEqual(Array(8).fill('queued'));
      if (i === 0) await expectPoolShowsTheReservation(stack, big, second);
    }
    const firstResults = await Promise.all(first.map((run) => resultWithin(run.handle, 240_000)));
    expect(firstResults.map((r) => r.status)).toEqual(Array(8).fill('completed'));
    const bigResult = await resultWithin(big.handle, 120_000);
    expect(bigResult).toMatchObject({ status: 'completed', worker: 'islands' });
    expect(bigResult.gpus).toHaveLength(8);
    const results = await Promise.all(second.map((run) => resultWithin(run.handle, 180_000)));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill('completed'));
    const bigStarted = Date.parse((await stateOf(big)).training!.startedAt);
    const laterStarts = (await Promise.all(second.map(stateOf))).map((s) => Date.parse(s.training!.startedAt));
    expect(bigStarted).toBeLessThan(Math.min(...laterStarts));
  });
});

/**
 * `expctl pool --json`, as an operator runs it, while a GPU is free but held for the 8-GPU request:
 * the reservation, and why each later 1-GPU run waits (it would hold the GPU past the reserved
 * start). Its text form is checked in test/unit/pool-plan-text.test.ts.
 */
async function expectPoolShowsTheReservation(stack: TestStack, big: Submitted, later: Submitted[]): Promise<void> {
  const env = { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace };
  const bigId = big.handle.workflowId;
  type Plan = {
    reservations: { experiment_id: string; host: string; gpus: number; slot_ids: string[]; starts_by: number | null }[];
    waiting: { experiment_id: string; why: string }[];
  };
  // Once the pool has taken the release of the first run that ended: a GPU of the eight is free.
  let last: unknown;
  const json = await eventually(async () => {
    const printed = await runCli(env, ['pool', '--json']);
    last = printed.stdout || printed.stderr;
    const plan = outputOf('pool', printed) as Plan;
    return plan.waiting.some((w) => w.experiment_id === bigId && /[1-7] free now/.test(w.why)) ? plan : undefined;
  }, 60_000).catch((error: Error) => {
    throw new Error(`${error.message}; \`expctl pool --json\` printed last:\n${String(last)}`);
  });
  expect(json.reservations[0]).toMatchObject({ experiment_id: bigId, host: 'islands', gpus: 8 });
  expect(json.reservations[0]!.slot_ids).toHaveLength(8);
  expect(json.reservations[0]!.starts_by).toEqual(expect.any(Number));
  const why = new Map(json.waiting.map((w) => [w.experiment_id, w.why]));
  expect(why.get(bigId)).toMatch(
    /^waits for 8 GPUs .*; reserved 8 GPUs of islands \(0-7: [1-7] free now, [1-7] held by leases\); estimated start /,
  );
  for (const run of later) expect(why.get(run.handle.workflowId)).toContain(`reserved for ${bigId}`);
}

describe('a run of every GPU of its host (--gpus all) whose host is lost', () => {
  let stack: TestStack;
  let victim: ResultPromise | undefined;
  beforeAll(async () => {
    stack = await startStack({ name: 'gang-replace', gpuWorker: false });
  });
  afterAll(async () => {
    victim?.kill('SIGKILL');
    await stack?.stop();
  });

  it('is placed again asking for the 2 GPUs it was granted, not every GPU of the next host', async () => {
    const fleet = {
      PATH: `${path.join(FIXTURES, 'bin')}${path.delimiter}${process.env.PATH}`,
      FAKE_NVIDIA_SMI_FLEET: path.join(FIXTURES, 'fleets', 'eight-a100.csv'),
    };
    // Two of the fake fleet's A100s (--gpus 0,1); a short fencing time lets the run be re-placed soon.
    victim = (
      await startWorkerProcess(stack, 'gang-victim', {
        cpuSlots: null,
        env: fleet,
        args: ['--gpus', '0,1', '--heartbeat', '2', '--orphan-grace', '4', '--fencing-time', '4'],
      })
    ).child;
    await configurePool(stack.client, { heartbeatLimitMs: 8_000 });
    const go = path.join(stack.workDir, 'replace-go');
    const run = await submitExperiment(
      stack.client,
      request(
        'replace',
        1,
        { GO_FILE: go },
        {
          requirements: { acceleratorClass: 'a100', gpuMemoryMb: 0, runtimeTags: [], gpus: 'all' },
          maxReplacements: 1,
        },
      ),
    );
    await waitFor(async () => (await stateOf(run)).status === 'running', 120_000);
    expect((await stateOf(run)).gpus).toEqual(['gang-victim/gpu0', 'gang-victim/gpu1']);
    // A spare host of eight A100s joins, then the first one dies mid-run.
    await stack.addGpuWorker({ host: 'gang-spare', fleet: 'eight-a100.csv' });
    victim.kill('SIGKILL');
    await victim;
    await waitFor(async () => (await stateOf(run)).worker === 'gang-spare', 200_000);
    await fs.writeFile(go, '');
    const result = await resultWithin(run.handle, 200_000);
    expect(result).toMatchObject({ status: 'completed', worker: 'gang-spare' });
    expect(result.gpus).toHaveLength(2);
    const state = await stateOf(run);
    expect(state.attempts).toBe(2);
    expect(state.placement?.slotIds).toEqual(result.gpus);
    expect(state.timeline.map((t) => t.note ?? '')).toContainEqual(
      expect.stringMatching(/^re-placed \(attempt 2\) on 2 healthy a100 GPUs of one host after: /),
    );
    expect(state.attemptRecords?.map((a) => a.host)).toEqual(['gang-victim', 'gang-spare']);
    // The lost host's lease was revoked once, not once per GPU of it.
    const { events } = await run.handle.fetchHistory();
    const revocations = (events ?? []).filter(
      (event) => event.workflowExecutionSignaledEventAttributes?.signalName === 'leaseRevoked',
    );
    expect(revocations).toHaveLength(1);
  });
});
