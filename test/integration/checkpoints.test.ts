import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTrainingActivities, type RunTrainingInput } from '../../src/activities/training.js';
import { submitExperiment } from '../../src/client/experiments.js';
import type { CheckpointDocument } from '../../src/domain/checkpoints.js';
import type { TrainingOutcome } from '../../src/domain/experiment.js';
import { RequestValidationError, type ExperimentRequestInput } from '../../src/domain/request.js';
import { attemptDocument, currentFence } from '../../src/store/fence.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import { storeLocation } from '../../src/store/location.js';
import { objectKey } from '../../src/store/store.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { makeRepo } from '../helpers/repo.js';
import type { ResultPromise } from 'execa';
import { drain, startStack, type TestStack } from '../helpers/stack.js';
import { startWorkerProcess } from '../helpers/worker-process.js';
import type { GpuWorkerHandle } from '../../src/roots/gpu-worker.js';
import { eventually } from '../helpers/wait.js';

/**
 * Checkpoints as the script contract says: write aside, rename into place. It prints what it was
 * handed and what it found restored, then writes STEPS checkpoints continuing from the restored
 * ones; with RELEASE it waits for that file before it ends (then writes after-release.pt with
 * AFTER_RELEASE); with BIG_BYTES it writes big.pt last.
 */
const CHECKPOINTING = `import json, os, time
d = os.environ["EXPCTL_CHECKPOINT_DIR"]
names = ("EXPCTL_CHECKPOINT_DIR", "EXPCTL_RESUME", "EXPCTL_RESUMED_FROM", "EXPCTL_CHECKPOINT")
print("CKPT_ENV " + json.dumps({k: os.environ[k] for k in names if k in os.environ}, sort_keys=True), flush=True)
print("BUDGET " + os.environ["EXPCTL_TIME_BUDGET"], flush=True)
found = {}
for root, _, files in os.walk(d):
    for name in files:
        full = os.path.join(root, name)
        found[os.path.relpath(full, d)] = open(full).read()
print("RESTORED " + json.dumps(found, sort_keys=True), flush=True)
start = len([n for n in found if n.startswith("step-")])
attempt = os.environ.get("ATTEMPT_LABEL", "first")
for i in range(start + 1, start + int(os.environ.get("STEPS", "3")) + 1):
    aside = os.path.join(d, f".step-{i}.pt.partial")
    with open(aside, "w") as f:
        f.write(f"weights after step {i} ({attempt})\\n")
    os.replace(aside, os.path.join(d, f"step-{i}.pt"))
    print(f"step {i:05d}/00010 | loss {2.0 - i * 0.01:.6f}", flush=True)
    time.sleep(0.1)
if os.environ.get("RELEASE"):
    deadline = time.time() + 120
    while not os.path.exists(os.environ["RELEASE"]) and time.time() < deadline:
        time.sleep(0.1)
if os.environ.get("AFTER_RELEASE"):
    with open(os.path.join(d, ".after-release.pt.partial"), "w") as f:
        f.write("weights after the release\\n")
    os.replace(os.path.join(d, ".after-release.pt.partial"), os.path.join(d, "after-release.pt"))
if os.environ.get("BIG_BYTES"):
    with open(os.path.join(d, "big.pt.tmp"), "wb") as f:
        f.write(b"x" * int(os.environ["BIG_BYTES"]))
    os.replace(os.path.join(d, "big.pt.tmp"), os.path.join(d, "big.pt"))
print("---")
print("val_bpb:          1.000000")
`;

const EXAMPLE = fileURLToPath(new URL('../../examples/ngram/train.py', import.meta.url));
const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));
const WORKFLOWS = fileURLToPath(new URL('../fixtures/workflows/train-attempt.ts', import.meta.url));
/** The stack's worker keeps at most this much of a run's checkpoints (EXPCTL_CHECKPOINT_QUOTA). */
const QUOTA = '64KiB';

let stack: TestStack;
let hostA: GpuWorkerHandle;
let source: { repo: string; commit: string };
let store: FilesystemStore;

function request(overrides: Partial<ExperimentRequestInput> = {}): ExperimentRequestInput {
  return {
    tag: 'ckpt',
    hypothesis: 'checkpoints reach the store and come back',
    category: 'hyperparams',
    command: ['python3', 'ckpt.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 60,
    ...overrides,
  };
}

/** What the script printed on its `LABEL {...}` line, from an outcome's log tail. */
function printed(outcome: TrainingOutcome | null | undefined, label: 'CKPT_ENV' | 'RESTORED'): Record<string, string> {
  const line = (outcome?.logTail ?? '').split('\n').find((l) => l.startsWith(`${label} `));
  expect(line, `the script's ${label} line in its log tail:\n${outcome?.logTail}`).toBeDefined();
  return JSON.parse(line!.slice(label.length + 1)) as Record<string, string>;
}

const checkpointOf = (experimentId: string, attempt: number) =>
  store.getDocument<CheckpointDocument>(attemptDocument(experimentId, attempt, 'checkpoint'));

/** One attempt of `experimentId` on another host (a work directory of its own), as the experiment workflow would run it. */
async function attemptOnOtherHost(input: Omit<RunTrainingInput, 'slot'>): Promise<TrainingOutcome> {
  const suffix = crypto.randomBytes(3).toString('hex');
  const host = `resume-host-${suffix}`;
  const slot = { ...hostA.slots[0]!, slotId: `${host}/cpu0`, host, taskQueue: host };
  const workDir = path.join(stack.workDir, host);
  await fs.mkdir(workDir, { recursive: true, mode: 0o700 });
  const worker = await Worker.create({
    connection: stack.nativeConnection,
    namespace: stack.namespace,
    dataConverter: stack.dataConverter,
    taskQueue: slot.taskQueue,
    workflowsPath: WORKFLOWS,
    activities: createTrainingActivities({
      slot,
      workDir,
      store,
      heartbeatIntervalMs: 500,
      killAfterMs: 2000,
      checkpointSyncMs: 500,
    }),
  });
  return worker.runUntil(
    stack.client.workflow.execute('trainAttempt', {
      taskQueue: slot.taskQueue,
      workflowId: `train-attempt-${suffix}`,
      args: [{ ...input, slot }, slot.taskQueue],
    }),
  ) as Promise<TrainingOutcome>;
}

beforeAll(async () => {
  // Read by the worker at its start, as an operator would set it on a host.
  process.env.EXPCTL_CHECKPOINT_QUOTA = QUOTA;
  try {
    stack = await startStack({ name: 'checkpoints', gpuWorker: false });
    hostA = await stack.addGpuWorker({ host: 'ckpt-a', cpuSlots: 1 });
  } finally {
    delete process.env.EXPCTL_CHECKPOINT_QUOTA;
  }
  source = await makeRepo({ 'ckpt.py': CHECKPOINTING });
  // The store every worker of this test opens: the default, under this test file's own state home.
  const location = storeLocation();
  if (location.kind !== 'filesystem') throw new Error('the test expects the filesystem store');
  store = new FilesystemStore(location.dir);
});
const workers = new Set<ResultPromise>();
afterAll(async () => {
  for (const child of workers) child.kill('SIGKILL');
  await stack?.stop();
});

/** `expctl worker` as its own process (SIGKILLed and started again on the same work directory). */
async function startWorker(host: string): Promise<{ child: ResultPromise }> {
  const started = await startWorkerProcess(stack, host, { args: ['--orphan-grace', '60'] });
  workers.add(started.child);
  return started;
}

describe('checkpoints in the fleet store', () => {
  let firstId: string;
  let firstDocument: CheckpointDocument;

  it("syncs the script's complete checkpoints while the run goes, skips one over the quota, and syncs at exit", async () => {
    const release = path.join(stack.workDir, `release-${crypto.randomBytes(3).toString('hex')}`);
    const { handle } = await submitExperiment(
      stack.client,
      request({ env: { RELEASE: release, BIG_BYTES: String(100 * 1024) } }),
    );
    firstId = handle.workflowId;
    // While the script still waits, its three checkpoints are in the store: synced mid-run.
    const during = await eventually(async () => {
      const document = await checkpointOf(firstId, 1);
      return document && document.files.length === 3 ? document : undefined;
    }, 90_000);
    expect((await handle.query(experimentStateQuery)).status).toBe('running');
    expect(during.files.map((file) => file.path).sort()).toEqual(['step-1.pt', 'step-2.pt', 'step-3.pt']);
    await fs.writeFile(release, '');

    const result = await handle.result();
    expect(result.status).toBe('completed');
    const outcome = (await handle.query(experimentStateQuery)).training!;
    // The directory is the run's own, on the worker's disk.
    expect(printed(outcome, 'CKPT_ENV')).toEqual({
      EXPCTL_CHECKPOINT_DIR: path.join(await fs.realpath(stack.workDir), 'ckpt-a', 'runs', firstId, 'checkpoints'),
    });
    firstDocument = (await checkpointOf(firstId, 1))!;
    expect(firstDocument).toMatchObject({
      attempt: 1,
      skipped: [{ path: 'big.pt', bytes: 102400, reason: 'over_quota' }],
    });
    expect(firstDocument.files.map((file) => file.path).sort()).toEqual(['step-1.pt', 'step-2.pt', 'step-3.pt']);
    expect(firstDocument.trainingSeconds).toBeGreaterThan(0);
    for (const file of firstDocument.files) {
      const bytes = await store.getBytes(file.sha256);
      expect(bytes.toString()).toBe(`weights after ${file.path.replace(/^step-(\d+)\.pt$/, 'step $1')} (first)\n`);
      expect(bytes.length).toBe(file.bytes);
    }
    expect(outcome.checkpoint).toEqual({
      synced: {
        files: 3,
        bytes: firstDocument.files.reduce((n, f) => n + f.bytes, 0),
        syncedAt: firstDocument.syncedAt,
      },
      skipped: [{ path: 'big.pt', bytes: 102400, reason: 'over_quota' }],
    });
    const overQuota = "checkpoint big.pt (100.0 KiB) over the run's quota 64.0 KiB: skipped";
    expect(outcome.storeProblems).toEqual([overQuota]);
    expect(outcome.logTail).toContain(`expctl: ${overQuota}`);
    // The attempt claimed the run's fence before it wrote anything.
    expect(await currentFence(store, firstId)).toMatchObject({ attempt: 1 });
  });

  it('changes nothing for a run that never checkpoints: no document, no record field, only the directory variable', async () => {
    const { handle } = await submitExperiment(stack.client, request({ env: { STEPS: '0' } }));
    expect((await handle.result()).status).toBe('completed');
    const outcome = (await handle.query(experimentStateQuery)).training!;
    expect(Object.keys(printed(outcome, 'CKPT_ENV'))).toEqual(['EXPCTL_CHECKPOINT_DIR']);
    expect(outcome).not.toHaveProperty('checkpoint');
    expect(outcome).not.toHaveProperty('storeProblems');
    // Its log is shipped like every run's; no checkpoint document is written.
    const documents = await store.listDocuments(`runs/${handle.workflowId}/attempts/`);
    expect(documents.map((document) => document.name)).toEqual([`runs/${handle.workflowId}/attempts/1/log`]);
  });

  it('resumes a later attempt on another host from the latest synced checkpoint, and tells the script which', async () => {
    const snapshot = await stack.client.workflow.getHandle(firstId).query(experimentStateQuery);
    const outcome = await attemptOnOtherHost({
      experimentId: firstId,
      request: { ...snapshot.request, env: { ATTEMPT_LABEL: 'second' } },
      leaseId: 'lease-of-attempt-2',
      attempt: 2,
      resume: true,
      trainedSeconds: firstDocument.trainingSeconds,
    });
    expect(printed(outcome, 'CKPT_ENV')).toMatchObject({
      EXPCTL_RESUME: '1',
      EXPCTL_RESUMED_FROM: `1@${firstDocument.syncedAt}`,
    });
    expect(printed(outcome, 'RESTORED')).toEqual({
      'step-1.pt': 'weights after step 1 (first)\n',
      'step-2.pt': 'weights after step 2 (first)\n',
      'step-3.pt': 'weights after step 3 (first)\n',
    });
    expect(outcome.checkpoint?.restore).toMatchObject({
      restored: true,
      experimentId: firstId,
      attempt: 1,
      syncedAt: firstDocument.syncedAt,
      files: 3,
    });
    expect(outcome.logTail).toContain(`expctl: resumed from the checkpoint of attempt 1 of ${firstId}`);
    // Charged with the training the checkpoint holds: the budget counts across attempts.
    const left = Math.max(1, Math.ceil(snapshot.request.timeBudgetSeconds - firstDocument.trainingSeconds));
    expect(outcome.logTail).toContain(`BUDGET ${left}\n`);
    // Attempt 2 holds the fence and synced its own checkpoint: the restored steps and its own.
    expect(await currentFence(store, firstId)).toMatchObject({ attempt: 2, leaseId: 'lease-of-attempt-2' });
    const second = (await checkpointOf(firstId, 2))!;
    expect(second.files.map((file) => file.path).sort()).toEqual([
      'step-1.pt',
      'step-2.pt',
      'step-3.pt',
      'step-4.pt',
      'step-5.pt',
      'step-6.pt',
    ]);
    // Training time counts across attempts.
    expect(second.trainingSeconds).toBeGreaterThan(firstDocument.trainingSeconds);
  });

  it('refuses a corrupt object by its hash and falls back to the attempt before', async () => {
    const second = (await checkpointOf(firstId, 2))!;
    const own = second.files.find((file) => file.path === 'step-6.pt')!;
    await fs.writeFile(path.join(store.root, objectKey(own.sha256)), 'bit rot\n');
    const snapshot = await stack.client.workflow.getHandle(firstId).query(experimentStateQuery);
    const outcome = await attemptOnOtherHost({
      experimentId: firstId,
      request: { ...snapshot.request, env: { STEPS: '0' } },
      leaseId: 'lease-of-attempt-3',
      attempt: 3,
      resume: true,
    });
    expect(outcome.logTail).toMatch(
      /expctl: the checkpoint of attempt 2 did not restore: object .* hashes to .*: refused/,
    );
    expect(printed(outcome, 'CKPT_ENV').EXPCTL_RESUMED_FROM).toBe(`1@${firstDocument.syncedAt}`);
    expect(Object.keys(printed(outcome, 'RESTORED')).sort()).toEqual(['step-1.pt', 'step-2.pt', 'step-3.pt']);
    expect(outcome.checkpoint?.restore).toMatchObject({ restored: true, attempt: 1 });
  });

  it('starts fresh and says so when nothing can be restored', async () => {
    const snapshot = await stack.client.workflow.getHandle(firstId).query(experimentStateQuery);
    const unknown = `exp-never-checkpointed-${crypto.randomBytes(3).toString('hex')}`;
    const outcome = await attemptOnOtherHost({
      experimentId: unknown,
      request: { ...snapshot.request, env: { STEPS: '0' } },
      leaseId: 'lease-fresh',
      attempt: 2,
      resume: true,
    });
    expect(Object.keys(printed(outcome, 'CKPT_ENV'))).toEqual(['EXPCTL_CHECKPOINT_DIR']);
    expect(printed(outcome, 'RESTORED')).toEqual({});
    const reason = `no attempt of ${unknown} has a synced checkpoint in the store`;
    expect(outcome.checkpoint).toEqual({ restore: { restored: false, reason }, synced: null, skipped: [] });
    expect(outcome.logTail).toContain(`expctl: nothing was restored (${reason}); the run starts fresh`);
  });

  it('never lets a superseded attempt write: its sync stops and says so', async () => {
    const snapshot = await stack.client.workflow.getHandle(firstId).query(experimentStateQuery);
    const before = await checkpointOf(firstId, 1);
    const outcome = await attemptOnOtherHost({
      experimentId: firstId,
      request: { ...snapshot.request, env: { ATTEMPT_LABEL: 'stale' } },
      leaseId: 'lease-of-a-stale-attempt-1',
      attempt: 1,
    });
    expect(outcome.logTail).toMatch(/attempt 1 of .* is no longer current: attempt 3 .* holds its fence/);
    expect(outcome.checkpoint?.stopped).toMatch(/is no longer current/);
    expect(await checkpointOf(firstId, 1)).toEqual(before);
    expect(await currentFence(store, firstId)).toMatchObject({ attempt: 3 });
  });

  it("starts a run from another experiment's latest checkpoint with --checkpoint store:ID", async () => {
    const { handle } = await submitExperiment(
      stack.client,
      request({ checkpoint: `store:${firstId}`, env: { STEPS: '1', ATTEMPT_LABEL: 'fine-tune' } }),
    );
    expect((await handle.result()).status).toBe('completed');
    const outcome = (await handle.query(experimentStateQuery)).training!;
    const seen = printed(outcome, 'CKPT_ENV');
    const third = (await checkpointOf(firstId, 3))!;
    expect(seen).toEqual({
      EXPCTL_CHECKPOINT_DIR: seen.EXPCTL_CHECKPOINT_DIR,
      EXPCTL_CHECKPOINT: seen.EXPCTL_CHECKPOINT_DIR,
      EXPCTL_RESUMED_FROM: `${firstId}:3@${third.syncedAt}`,
    });
    expect(Object.keys(printed(outcome, 'RESTORED')).sort()).toEqual(['step-1.pt', 'step-2.pt', 'step-3.pt']);
    expect(outcome.checkpoint?.restore).toMatchObject({ restored: true, experimentId: firstId, attempt: 3 });
  });

  it('refuses a store checkpoint that names no synced checkpoint, or is malformed, with a clear error', async () => {
    const missing = `exp-nothing-here-${crypto.randomBytes(3).toString('hex')}`;
    const { handle } = await submitExperiment(stack.client, request({ checkpoint: `store:${missing}` }));
    const result = await handle.result();
    expect(result.status).toBe('validation_failed');
    expect(result.reason).toMatch(
      new RegExp(
        `checkpoint store:${missing}: no attempt of ${missing} has a synced checkpoint in the fleet store file://`,
      ),
    );
    const refusal = await submitExperiment(stack.client, request({ checkpoint: 'store:has space' })).catch((e) => e);
    expect(refusal).toBeInstanceOf(RequestValidationError);
    expect(String(refusal.message)).toMatch(/checkpoint: "store:has space" must be store:EXPERIMENT_ID/);
  });

  it('the example train.py checkpoints, and a resumed attempt ends with the val_bpb of a run never interrupted', async () => {
    const example = await makeRepo({}, EXAMPLE);
    // Attempt 1 crashes midway (EXPCTL_EXAMPLE_CRASH=1), after its checkpoint of step 50.
    const { handle } = await submitExperiment(
      stack.client,
      request({
        command: ['python3', 'train.py'],
        repo: example.repo,
        commit: example.commit,
        env: { EXPCTL_EXAMPLE_CRASH: '1' },
      }),
    );
    expect((await handle.result()).status).toBe('command_failed');
    const crashed = (await checkpointOf(handle.workflowId, 1))!;
    expect(crashed.files.map((file) => file.path)).toEqual(['checkpoint.json']);
    const snapshot = await handle.query(experimentStateQuery);
    const outcome = await attemptOnOtherHost({
      experimentId: handle.workflowId,
      request: { ...snapshot.request, env: {} },
      leaseId: 'lease-of-the-example-attempt-2',
      attempt: 2,
      resume: true,
    });
    expect(outcome.exitCode).toBe(0);
    // Its progress lines push the start out of the record's tail: the run's log on its host has it.
    expect(await fs.readFile(outcome.logPath, 'utf8')).toContain(
      `after step 50/100 (EXPCTL_RESUMED_FROM=1@${crashed.syncedAt})`,
    );
    // The baseline's figure in examples/ngram/README.md, as a run of all 100 steps at once gives it.
    expect(outcome.metrics).toMatchObject({ val_bpb: 3.370414, num_steps: 100 });
  });

  it('a worker restarted mid-run re-attaches and goes on syncing the run it adopted', async () => {
    const host = 'ckpt-phoenix';
    let { child } = await startWorker(host);
    // Only the worker this test restarts may take the run.
    await drain(stack.client, 'ckpt-a', true, 'the adoption test needs its own host');
    try {
      const release = path.join(stack.workDir, `release-${crypto.randomBytes(3).toString('hex')}`);
      const { handle } = await submitExperiment(
        stack.client,
        request({ maxReplacements: 0, env: { RELEASE: release, AFTER_RELEASE: '1' } }),
      );
      await eventually(
        async () => ((await checkpointOf(handle.workflowId, 1))?.files.length === 3 ? true : undefined),
        90_000,
      );
      child.kill('SIGKILL');
      await child;
      workers.delete(child);
      ({ child } = await startWorker(host));
      // The script writes one more checkpoint only now, under the restarted worker.
      await fs.writeFile(release, '');
      expect((await handle.result()).status).toBe('completed');
      const document = (await checkpointOf(handle.workflowId, 1))!;
      expect(document.files.map((file) => file.path).sort()).toEqual([
        'after-release.pt',
        'step-1.pt',
        'step-2.pt',
        'step-3.pt',
      ]);
      const outcome = (await handle.query(experimentStateQuery)).training!;
      expect(outcome.checkpoint?.synced).toMatchObject({ files: 4, syncedAt: document.syncedAt });
      const log = await fs.readFile(outcome.logPath, 'utf8');
      expect(log).toContain('expctl: a restarted worker re-attached to this run');
      child.kill('SIGTERM');
      await child;
      workers.delete(child);
    } finally {
      await drain(stack.client, 'ckpt-a', false, 'the adoption test is over');
    }
  });
});
