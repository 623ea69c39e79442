import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { drainTarget } from '../../src/client/fleet.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import type { StoredObject } from '../../src/store/store.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { EXPCTL, outputOf } from '../helpers/cli.js';
import { eventsSince, eventTypeName } from '../helpers/event-counts.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { eventually, waitFor } from '../helpers/wait.js';

/** A real filesystem store whose artifact uploads wait until the test lets them through. */
class HeldArtifactStore extends FilesystemStore {
  readonly waiting: string[] = [];
  private open!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.open = resolve));

  override async putFile(file: string): Promise<StoredObject> {
    if (file.includes(`${path.sep}artifacts${path.sep}`)) {
      this.waiting.push(file);
      await this.gate;
    }
    return super.putFile(file);
  }

  letThrough(): void {
    this.open();
  }

  /** Whether an upload of this experiment's artifacts is held. */
  holds(experimentId: string): boolean {
    return this.waiting.some((file) => file.includes(`${path.sep}${experimentId}${path.sep}`));
  }
}

// One slot: the second run can only start on the GPU the first one held.
let stack: TestStack;
let storeDir: string;
const store = (() => {
  storeDir = path.join(os.tmpdir(), `expctl-held-store-${process.pid}-${Date.now()}`);
  return new HeldArtifactStore(storeDir);
})();

beforeAll(async () => {
  stack = await startStack({ name: 'dispatch', host: 'dispatchhost', cpuSlots: 1, store });
});
afterAll(async () => {
  store.letThrough();
  await stack?.stop();
  await fs.rm(storeDir, { recursive: true, force: true });
});

describe('a slot is handed on when its run exits', () => {
  it("frees the lease while the finished run's artifacts still upload, and the next run trains meanwhile", async () => {
    const source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'promote_train.py'));
    const submit = (hypothesis: string) =>
      submitExperiment(stack.client, {
        tag: 'handover',
        hypothesis,
        category: 'other',
        command: ['python3', 'train.py'],
        repo: source.repo,
        commit: source.commit,
        env: { VAL_BPB: '1.0' },
      });
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    const leaseOf = async (experimentId: string) =>
      (await pool.query(poolStateQuery)).slots.find((entry) => entry.lease?.experimentId === experimentId)?.lease;

    const first = await submit('first on the slot');
    await waitFor(async () => store.holds(first.experimentId), 120_000);
    // Its process is gone and its record not written: the pool has the slot back already.
    await waitFor(async () => (await leaseOf(first.experimentId)) === undefined, 30_000);
    expect((await first.handle.query(experimentStateQuery)).status).toBe('running');

    const second = await submit('second on the slot');
    // The second run is granted the same GPU, trains and exits while the first is still uploading.
    await waitFor(async () => store.holds(second.experimentId), 120_000);
    expect((await first.handle.query(experimentStateQuery)).status).toBe('running');

    store.letThrough();
    const [a, b] = await Promise.all([first.handle.result(), second.handle.result()]);
    expect(a).toMatchObject({ status: 'completed' });
    expect(b).toMatchObject({ status: 'completed' });
    expect(b.gpu).toBe(a.gpu);
    // Nothing of the first run's record was lost for handing the slot on early.
    const record = (await stack.catalog.get(first.experimentId))!;
    expect(record.artifacts).toEqual([expect.objectContaining({ path: 'model.txt', uri: expect.any(String) })]);
    expect(record.metrics).toMatchObject({ val_bpb: 1 });
    // Each worker's release was one update the pool answered (it granted the second run in it); the
    // experiments, told by their outcomes that the lease went back, sent no release of their own.
    expect((await first.handle.query(experimentStateQuery)).training?.leaseReleased).toBe(true);
    const events = (await pool.fetchHistory()).events ?? [];
    const named = (name: string) =>
      events.filter(
        (event) =>
          event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === name ||
          event.workflowExecutionSignaledEventAttributes?.signalName === name,
      );
    expect(named('releaseLease')).toHaveLength(2);
  });

  it('hands the slot to the run lined up behind the running one at its exit, with no message to the pool', async () => {
    const source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'gated_train.py'));
    const files = (name: string) => path.join(storeDir, `${name}-${Date.now()}`);
    const [startedA, gateA, startedB, gateB] = ['started-a', 'gate-a', 'started-b', 'gate-b'].map(files);
    const submit = (hypothesis: string, started: string, gate: string) =>
      submitExperiment(stack.client, {
        tag: 'lined-up',
        hypothesis,
        category: 'other',
        command: ['python3', 'train.py'],
        repo: source.repo,
        commit: source.commit,
        env: { VAL_BPB: '1.0', STARTED_FILE: started!, GATE_FILE: gate! },
      });
    const exists = (file: string) =>
      fs.stat(file).then(
        () => true,
        () => false,
      );
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    const slotOf = async (experimentId: string) =>
      (await pool.query(poolStateQuery)).slots.find((entry) => entry.lease?.experimentId === experimentId);

    const first = await submit('trains while the second waits', startedA!, gateA!);
    await waitFor(() => exists(startedA!), 120_000);
    const second = await submit('lined up behind the first', startedB!, gateB!);
    // The second run's request lines it up behind the first run's lease; it stays queued.
    const linedUp = await eventually(async () => {
      const entry = await slotOf(first.experimentId);
      return entry?.next?.lease.experimentId === second.experimentId ? entry : undefined;
    }, 60_000);
    expect((await second.handle.query(experimentStateQuery)).status).toBe('queued');
    const { runId, historyLength } = await pool.describe();

    await fs.writeFile(gateA!, '');
    await waitFor(() => exists(startedB!), 120_000);
    // The first run's worker told the second run itself: between the line-up and the second run's
    // start, nobody sent the pool an update (a release would be one, and come before any grant).
    const between = await eventsSince(stack.client, POOL_WORKFLOW_ID, { runId, afterEventId: historyLength });
    expect(between.map(eventTypeName).filter((type) => type.startsWith('WORKFLOW_EXECUTION_UPDATE'))).toEqual([]);
    const running = await second.handle.query(experimentStateQuery);
    expect(running.status).toBe('running');
    expect(running.gpu).toBe(linedUp.slot.slotId);

    await fs.writeFile(gateB!, '');
    const [a, b] = await Promise.all([first.handle.result(), second.handle.result()]);
    expect(a).toMatchObject({ status: 'completed' });
    expect(b).toMatchObject({ status: 'completed', gpu: a.gpu });
    // The second run's exit ends the chain: one release, and the slot is free.
    const after = await eventsSince(stack.client, POOL_WORKFLOW_ID, { runId, afterEventId: historyLength });
    const releases = after.filter(
      (event) => event.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name === 'releaseLease',
    );
    expect(releases).toHaveLength(1);
    await waitFor(async () => {
      const entry = (await pool.query(poolStateQuery)).slots.find((e) => e.slot.slotId === linedUp.slot.slotId);
      return entry?.lease === null && !entry.next;
    }, 30_000);
  });

  it('shows a lined-up run on its slot, and sends it back to the queue when the slot is drained', async () => {
    const source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'gated_train.py'));
    const files = (name: string) => path.join(storeDir, `${name}-${Date.now()}`);
    const [startedA, gateA, startedB, gateB] = [
      'drain-started-a',
      'drain-gate-a',
      'drain-started-b',
      'drain-gate-b',
    ].map(files);
    const submit = (hypothesis: string, started: string, gate: string) =>
      submitExperiment(stack.client, {
        tag: 'lined-up-drain',
        hypothesis,
        category: 'other',
        command: ['python3', 'train.py'],
        repo: source.repo,
        commit: source.commit,
        env: { VAL_BPB: '1.0', STARTED_FILE: started, GATE_FILE: gate },
      });
    const exists = (file: string) =>
      fs.stat(file).then(
        () => true,
        () => false,
      );
    const cli = (...args: string[]) =>
      execa(process.execPath, ['--import', 'data:text/javascript,process.stdout.isTTY=true', EXPCTL, ...args], {
        env: {
          TEMPORAL_ADDRESS: stack.address,
          TEMPORAL_NAMESPACE: stack.namespace,
          EXPCTL_CATALOG: stack.catalogPath,
        },
        reject: false,
      });
    const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
    const slotNamed = async (slotId: string) =>
      (await pool.query(poolStateQuery)).slots.find((entry) => entry.slot.slotId === slotId)!;

    const first = await submit('holds the slot', startedA!, gateA!);
    await waitFor(() => exists(startedA!), 120_000);
    const second = await submit('lined up, then drained off', startedB!, gateB!);
    const linedUp = await eventually(async () => {
      const entry = (await pool.query(poolStateQuery)).slots.find((e) => e.lease?.experimentId === first.experimentId);
      return entry?.next?.lease.experimentId === second.experimentId ? entry : undefined;
    }, 60_000);
    const slotId = linedUp.slot.slotId;

    // The operator's table names the lined-up run in the slot's `next` column; --json has it too.
    const table = await cli('pool');
    expect(table.exitCode, table.stderr).toBe(0);
    const [header, row] = table.stdout.split('\n');
    expect(header!.split(/\s+/).at(-1)).toBe('next');
    expect(row!.split(/\s+/).at(-1)).toBe(second.experimentId);
    const json = outputOf('pool', await cli('pool', '--json')) as {
      slots: { slot: { slot_id: string }; next?: { lease: { experiment_id: string } } | null }[];
    };
    expect(json.slots.find((entry) => entry.slot.slot_id === slotId)?.next?.lease.experiment_id).toBe(
      second.experimentId,
    );

    // `show` says where it waits: lined up on the GPU, behind the run that holds it.
    const shown = outputOf('show', await cli('show', second.experimentId, '--json')) as {
      queue_position: unknown;
      lined_up?: unknown;
    };
    expect(shown.lined_up).toEqual({ slot_id: slotId, behind: first.experimentId });
    expect(shown.queue_position).toBeNull();

    try {
      await drainTarget(stack.client, { target: slotId, drained: true, reason: 'lined-up test' });
      // Back at the front of the queue, as first enqueued; the revocation it was sent changed nothing in it.
      const drained = await pool.query(poolStateQuery);
      expect(drained.slots.find((entry) => entry.slot.slotId === slotId)?.next ?? null).toBeNull();
      expect(drained.queue.map((r) => [r.experimentId, r.enqueuedAt])).toEqual([
        [second.experimentId, linedUp.next!.request.enqueuedAt],
      ]);
      await fs.writeFile(gateA!, '');
      expect(await first.handle.result()).toMatchObject({ status: 'completed' });
      // The drained slot is free and nobody was handed it.
      await waitFor(async () => (await slotNamed(slotId)).lease === null, 30_000);
      expect(await exists(startedB!)).toBe(false);
      expect((await second.handle.query(experimentStateQuery)).status).toBe('queued');
    } finally {
      await fs.writeFile(gateB!, '');
      await drainTarget(stack.client, { target: slotId, drained: false, reason: 'lined-up test' });
    }
    expect(await second.handle.result()).toMatchObject({ status: 'completed', gpu: slotId });
  });
});
