import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ActivityCancellationDetails, ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrainingActivities, type RunWatch } from '../../src/activities/training.js';
import type { Slot } from '../../src/domain/fleet.js';
import { parseExperimentRequest } from '../../src/domain/request.js';
import { MasterPorts } from '../../src/gpu-worker/master-ports.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { processAlive } from '../../src/shared/processes.js';
import { GPUS_NOT_FREE_ON_HOST } from '../../src/shared/constants.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

// The process contract of a multi-GPU run, on real processes: the train activity in Temporal's
// activity test environment runs a torchrun-like launcher that starts one worker per GPU.

const gpu = (index: number, host = 'gang'): Slot => ({
  slotId: `${host}/gpu${index}`,
  host,
  index,
  uuid: `GPU-${host}-${index}`,
  name: 'NVIDIA H100 80GB HBM3',
  acceleratorClass: 'h100',
  memoryMb: 81559,
  taskQueue: `expctl-slot-${host}-gpu${index}`,
  runtimeTags: [],
  nvlinkIsland: index < 4 ? 0 : 1,
  numaNode: index < 4 ? 0 : 1,
});

let workDir: string;
let reports: string;
let source: { repo: string; commit: string };
// One worker process's shared state: its live runs and their ports.
const hostRuns: Map<string, RunWatch> = new Map();
const masterPorts = new MasterPorts();
const activitiesOf = (slot: Slot) =>
  createTrainingActivities({ slot, workDir, heartbeatIntervalMs: 200, killAfterMs: 1000, hostRuns, masterPorts });

const request = (env: Record<string, string>, limits: { timeBudgetSeconds: number; timeoutSeconds?: number }) =>
  parseExperimentRequest({
    tag: 'gang',
    hypothesis: 'h',
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    env,
    ...limits,
  });

interface RankReport {
  pid: number;
  rank: number;
  cuda_visible_devices: string;
  device: string | null;
  world_size: number;
  master: string;
}

/** A directory for one run's reports, and a reader of its ranks' files once all K are written. */
async function reportDir(name: string) {
  const dir = path.join(reports, name);
  await fs.mkdir(dir);
  return {
    dir,
    ranks: async (k: number): Promise<RankReport[]> => {
      const files = Array.from({ length: k }, (_, rank) => path.join(dir, `rank-${rank}.json`));
      await waitFor(async () => (await Promise.all(files.map(fileExists))).every(Boolean), 60_000);
      return Promise.all(files.map(async (file) => JSON.parse(await fs.readFile(file, 'utf8')) as RankReport));
    },
    launcher: async () => {
      const file = path.join(dir, 'launcher.json');
      await waitFor(() => fileExists(file), 60_000);
      return JSON.parse(await fs.readFile(file, 'utf8')) as { pid: number; workers: number[] };
    },
  };
}

beforeAll(async () => {
  workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-gang-'));
  reports = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-gang-reports-'));
  source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'torchrun_like.py'));
});
afterAll(async () => {
  await fs.rm(workDir, { recursive: true, force: true });
  await fs.rm(reports, { recursive: true, force: true });
});

describe('a K-GPU run', () => {
  it('killed by its limit leaves no process alive, and each worker saw exactly the lease GPUs in order', async () => {
    const experimentId = 'exp-gang-limit';
    // The lease's topology order, not index order: the run must keep it.
    const lease = [gpu(2), gpu(3), gpu(0), gpu(1)];
    const report = await reportDir('limit');
    const running = new MockActivityEnvironment().run(activitiesOf(lease[0]!).runTraining, {
      experimentId,
      request: request({ GANG_REPORT_DIR: report.dir, IGNORE_TERM: '1' }, { timeBudgetSeconds: 1, timeoutSeconds: 20 }),
      slot: lease[0]!,
      slots: lease,
      leaseId: 'gang-l1',
    });
    const ranks = await report.ranks(4);
    const launcher = await report.launcher();
    const record = JSON.parse(await fs.readFile(runFiles(workDir, experimentId).record, 'utf8')) as {
      slotIds: string[];
      masterPort: number;
    };
    expect(record.slotIds).toEqual(['gang/gpu2', 'gang/gpu3', 'gang/gpu0', 'gang/gpu1']);
    expect(ranks.map((rank) => rank.cuda_visible_devices)).toEqual(['2,3,0,1', '2,3,0,1', '2,3,0,1', '2,3,0,1']);
    expect(ranks.map((rank) => rank.device)).toEqual(['2', '3', '0', '1']);
    expect(ranks.every((rank) => rank.world_size === 4 && rank.master === `127.0.0.1:${record.masterPort}`)).toBe(true);
    const pids = [launcher.pid, ...ranks.map((rank) => rank.pid)];
    expect(pids.every(processAlive)).toBe(true);

    const outcome = await running;
    expect(outcome).toMatchObject({ timedOut: true, canceled: false });
    // The outcome is returned once every process of the run is gone: none is left a moment later.
    expect(pids.filter(processAlive)).toEqual([]);
    expect(masterPorts.has(record.masterPort)).toBe(false);
    const log = await fs.readFile(runFiles(workDir, experimentId).log, 'utf8');
    expect(log).toMatch(/on 4 GPUs gang\/gpu2, gang\/gpu3, gang\/gpu0, gang\/gpu1 \(NVIDIA H100 80GB HBM3\)/);
  });

  it('a cancel stops every worker of it too', async () => {
    const experimentId = 'exp-gang-cancel';
    const lease = [gpu(4), gpu(5)];
    const report = await reportDir('cancel');
    const env = new MockActivityEnvironment();
    const running = env.run(activitiesOf(lease[0]!).runTraining, {
      experimentId,
      request: request({ GANG_REPORT_DIR: report.dir }, { timeBudgetSeconds: 60 }),
      slot: lease[0]!,
      slots: lease,
      leaseId: 'gang-l2',
    });
    const pids = [(await report.launcher()).pid, ...(await report.ranks(2)).map((rank) => rank.pid)];
    env.cancel('CANCELLED', new ActivityCancellationDetails({ cancelRequested: true }));
    await expect(running).rejects.toBeInstanceOf(CancelledFailure);
    expect(pids.filter(processAlive)).toEqual([]);
  });
});

describe('a K-GPU run re-attached by a restarted worker', () => {
  it('is adopted with every GPU and its port, and a cancel then stops every worker of it', async () => {
    const experimentId = 'exp-gang-adopted';
    const lease = [gpu(6), gpu(7)];
    const report = await reportDir('adopted');
    const letGo = new MockActivityEnvironment();
    const running = letGo
      .run(activitiesOf(lease[0]!).runTraining, {
        experimentId,
        request: request({ GANG_REPORT_DIR: report.dir }, { timeBudgetSeconds: 60 }),
        slot: lease[0]!,
        slots: lease,
        leaseId: 'adopt-l1',
      })
      .catch((error: unknown) => error);
    const pids = [(await report.launcher()).pid, ...(await report.ranks(2)).map((rank) => rank.pid)];
    // The server forgot the task (an outage): the task lets go, the run goes on.
    letGo.cancel('NOT_FOUND', new ActivityCancellationDetails({ notFound: true }));
    expect(await running).toBeInstanceOf(CancelledFailure);
    expect(pids.every(processAlive)).toBe(true);
    const { masterPort } = JSON.parse(await fs.readFile(runFiles(workDir, experimentId).record, 'utf8')) as {
      masterPort: number;
    };

    // A worker process started later: its own registry of runs and its own ports.
    const restartedRuns: Map<string, RunWatch> = new Map();
    const restartedPorts = new MasterPorts();
    const restarted = (slot: Slot) =>
      createTrainingActivities({
        slot,
        workDir,
        heartbeatIntervalMs: 200,
        killAfterMs: 1000,
        hostRuns: restartedRuns,
        masterPorts: restartedPorts,
      });
    const follow = new MockActivityEnvironment();
    const adopted = follow
      .run(restarted(lease[0]!).awaitTraining, { experimentId, slot: lease[0]!, leaseId: 'adopt-l1' })
      .catch((error: unknown) => error);
    await waitFor(async () => restartedRuns.has(experimentId), 30_000);
    expect(restartedRuns.get(experimentId)!.slotIds).toEqual(['gang/gpu6', 'gang/gpu7']);
    expect(restartedPorts.has(masterPort)).toBe(true);
    const refusal = await new MockActivityEnvironment()
      .run(restarted(gpu(7)).runTraining, {
        experimentId: 'exp-wants-7',
        request: request({ GANG_REPORT_DIR: reports }, { timeBudgetSeconds: 60 }),
        slot: gpu(7),
        leaseId: 'adopt-l2',
      })
      .catch((error: unknown) => error as Error);
    expect((refusal as Error).message).toBe(
      'gang/gpu7 is held by the live run exp-gang-adopted; exp-wants-7 was not started',
    );

    follow.cancel('CANCELLED', new ActivityCancellationDetails({ cancelRequested: true }));
    expect(await adopted).toBeInstanceOf(CancelledFailure);
    expect(pids.filter(processAlive)).toEqual([]);
    await waitFor(async () => !restartedPorts.has(masterPort), 10_000);
    // The first worker process, which still watched it, lets go of its GPUs too.
    await waitFor(async () => !hostRuns.has(experimentId), 30_000);
  });
});

describe('GPUs are exclusive to their lease, and every run of a host has its own MASTER_PORT', () => {
  it('refuses a run whose GPU another live run holds; two live runs never share a port', async () => {
    const first = await reportDir('first');
    const firstEnv = new MockActivityEnvironment();
    const firstRun = firstEnv.run(activitiesOf(gpu(0)).runTraining, {
      experimentId: 'exp-holds-0-1',
      request: request({ GANG_REPORT_DIR: first.dir }, { timeBudgetSeconds: 60 }),
      slot: gpu(0),
      slots: [gpu(0), gpu(1)],
      leaseId: 'hold-l1',
    });
    const [firstRank] = await first.ranks(2);

    const refusal = await new MockActivityEnvironment()
      .run(activitiesOf(gpu(1)).runTraining, {
        experimentId: 'exp-wants-1-2',
        request: request({ GANG_REPORT_DIR: reports }, { timeBudgetSeconds: 60 }),
        slot: gpu(1),
        slots: [gpu(1), gpu(2)],
        leaseId: 'hold-l2',
      })
      .catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(ApplicationFailure);
    expect((refusal as ApplicationFailure).type).toBe(GPUS_NOT_FREE_ON_HOST);
    expect((refusal as ApplicationFailure).message).toBe(
      'gang/gpu1 is held by the live run exp-holds-0-1; exp-wants-1-2 was not started',
    );
    expect(await fileExists(runFiles(workDir, 'exp-wants-1-2').record)).toBe(false);

    const second = await reportDir('second');
    const secondEnv = new MockActivityEnvironment();
    const secondRun = secondEnv.run(activitiesOf(gpu(2)).runTraining, {
      experimentId: 'exp-holds-2-3',
      request: request({ GANG_REPORT_DIR: second.dir }, { timeBudgetSeconds: 60 }),
      slot: gpu(2),
      slots: [gpu(2), gpu(3)],
      leaseId: 'hold-l3',
    });
    const [secondRank] = await second.ranks(2);
    expect(secondRank!.cuda_visible_devices).toBe('2,3');
    expect(secondRank!.master).not.toBe(firstRank!.master);

    for (const env of [firstEnv, secondEnv])
      env.cancel('CANCELLED', new ActivityCancellationDetails({ cancelRequested: true }));
    await Promise.all([
      expect(firstRun).rejects.toBeInstanceOf(CancelledFailure),
      expect(secondRun).rejects.toBeInstanceOf(CancelledFailure),
    ]);
  });

  it('stops a run still holding a GPU whose lease the pool no longer holds, then starts', async () => {
    const revoked = new Set<string>();
    const asking = (slot: Slot) =>
      createTrainingActivities({
        slot,
        workDir,
        heartbeatIntervalMs: 200,
        killAfterMs: 1000,
        hostRuns,
        masterPorts,
        leaseHeld: async (_slotId, leaseId) => !revoked.has(leaseId),
        // The stale run's own check would stop it too: this test is about the new run stopping it first.
        leaseCheckIntervalMs: 600_000,
      });
    const stale = await reportDir('stale');
    const staleEnd = new MockActivityEnvironment()
      .run(asking(gpu(4)).runTraining, {
        experimentId: 'exp-stale',
        request: request({ GANG_REPORT_DIR: stale.dir }, { timeBudgetSeconds: 60 }),
        slot: gpu(4),
        slots: [gpu(4), gpu(5)],
        leaseId: 'stale-l1',
      })
      .catch((error: unknown) => error);
    const stalePids = (await stale.ranks(2)).map((rank) => rank.pid);
    // The pool revoked its lease and gave gpu5 away; the stale run has not noticed yet.
    revoked.add('stale-l1');
    const fresh = await reportDir('fresh');
    const outcome = await new MockActivityEnvironment().run(asking(gpu(5)).runTraining, {
      experimentId: 'exp-fresh',
      request: request({ GANG_REPORT_DIR: fresh.dir, FINISH: '1' }, { timeBudgetSeconds: 60 }),
      slot: gpu(5),
      leaseId: 'fresh-l1',
    });
    expect(outcome).toMatchObject({ exitCode: 0 });
    expect(await staleEnd).toBeInstanceOf(CancelledFailure);
    expect(stalePids.filter(processAlive)).toEqual([]);
    expect((await fresh.ranks(1))[0]!.cuda_visible_devices).toBe('5');
  });

  it('refuses a set that spans hosts or does not start with its own slot', async () => {
    const run = (slots: Slot[]) =>
      new MockActivityEnvironment()
        .run(activitiesOf(gpu(6)).runTraining, {
          experimentId: 'exp-odd-set',
          request: request({ GANG_REPORT_DIR: reports }, { timeBudgetSeconds: 60 }),
          slot: gpu(6),
          slots,
          leaseId: 'odd-l1',
        })
        .then(
          () => {
            throw new Error('the run was not refused');
          },
          (error: unknown) => error as ApplicationFailure,
        );
    const spanning = await run([gpu(6), gpu(0, 'other')]);
    expect(spanning.type).toBe(GPUS_NOT_FREE_ON_HOST);
    expect(spanning.message).toMatch(/includes other\/gpu0, not on gang; a run's GPUs are all on one host/);
    expect((await run([gpu(7), gpu(6)])).message).toMatch(/lists gang\/gpu7 first, not gang\/gpu6/);
  });

  it('a one-GPU run gets the same contract with one device and one process', async () => {
    const experimentId = 'exp-one-gpu';
    const report = await reportDir('one');
    const outcome = await new MockActivityEnvironment().run(activitiesOf(gpu(7)).runTraining, {
      experimentId,
      request: request({ GANG_REPORT_DIR: report.dir, FINISH: '1' }, { timeBudgetSeconds: 60 }),
      slot: gpu(7),
      leaseId: 'one-l1',
    });
    expect(outcome).toMatchObject({ exitCode: 0, timedOut: false });
    const [rank] = await report.ranks(1);
    expect(rank).toMatchObject({ cuda_visible_devices: '7', device: '7', world_size: 1 });
    expect(await fs.readFile(runFiles(workDir, experimentId).log, 'utf8')).toMatch(
      /attempt 1 on gang\/gpu7 \(NVIDIA H100 80GB HBM3\); commit/,
    );
    const record = JSON.parse(await fs.readFile(runFiles(workDir, experimentId).record, 'utf8')) as object;
    expect('slotIds' in record).toBe(false);
  });
});
