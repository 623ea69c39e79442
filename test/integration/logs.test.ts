import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { WORKFLOWS_PATH } from '../../src/roots/orchestrator.js';
import type { ShippedLogDocument } from '../../src/gpu-worker/log-shipping.js';
import { attemptDocument } from '../../src/store/fence.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import { runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

// `expctl logs` as a user runs it: pages read from the host through one log session per reader,
// a follower long-polling the host (no workflow per read); the log the worker shipped to the fleet
// store when the host is gone. A re-placed run's first attempt, read from the store after its host
// was killed, is checked where such a run is made: long-run.test.ts.
const HOST = 'loghost';
let stack: TestStack;
let source: { repo: string; commit: string };
let storeDir: string;
let store: FilesystemStore;

const cliEnv = () => ({ TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace });

const shippedLog = (experimentId: string, attempt: number) =>
  store.getDocument<ShippedLogDocument>(attemptDocument(experimentId, attempt, 'log'));

/** The shipped log's bytes, chunk by chunk (each verified by its hash). */
async function shippedText(document: ShippedLogDocument): Promise<string> {
  const parts = await Promise.all(document.chunks.map((chunk) => store.getBytes(chunk.sha256)));
  return Buffer.concat(parts).toString('utf8');
}

/** The log sessions (and one-page reads of earlier versions) started for an experiment. */
async function logWorkflows(experimentId: string) {
  const found: { workflowId: string; type: string; status: string }[] = [];
  for await (const execution of stack.client.workflow.list({ query: `WorkflowId STARTS_WITH "logs-${experimentId}-"` }))
    found.push({ workflowId: execution.workflowId, type: execution.type, status: execution.status.name });
  return found;
}

/** A short run of the stand-in script on the stack's one slot. */
const submit = (hypothesis: string, env: Record<string, string>) =>
  submitExperiment(stack.client, {
    tag: 'logs',
    hypothesis,
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 30,
    env,
  });

beforeAll(async () => {
  // The fleet store every process of this file shares: the orchestrator, the workers, the CLI.
  storeDir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-logs-store-'));
  process.env.EXPCTL_STORE = storeDir;
  store = new FilesystemStore(storeDir);
  stack = await startStack({ name: 'logs', host: HOST, cpuSlots: 1 });
  source = await makeRepo();
});
afterAll(async () => {
  await stack?.stop();
  await fs.rm(storeDir, { recursive: true, force: true });
});

describe('expctl logs', () => {
  it('follows a run to its end through one log session, and reads a finished log in one more', async () => {
    const { experimentId, handle } = await submit('follow the log', {
      STEPS: '20',
      STEP_SECONDS: '0.25',
      VAL_BPB: '1.5',
    });
    const followed = await runCli(cliEnv(), ['logs', '-f', experimentId]);
    expect(followed.exitCode, followed.stderr as string).toBe(0);
    expect(followed.stdout).toContain('step 00001/00020');
    expect(followed.stdout).toContain('step 00020/00020');
    expect(followed.stdout).toMatch(/val_bpb:\s+1\.5/);
    expect((await handle.result()).status).toBe('completed');

    // Reading it again gives the same bytes.
    const again = await runCli(cliEnv(), ['logs', experimentId]);
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toBe(followed.stdout);

    // Two readers, two sessions: each ended when its reader was done, none of the one-page kind.
    await waitFor(async () => {
      const sessions = await logWorkflows(experimentId);
      return sessions.length === 2 && sessions.every((s) => s.status === 'COMPLETED');
    }, 30_000);
    const sessions = await logWorkflows(experimentId);
    expect(sessions.map((s) => s.type)).toEqual(['logSessionWorkflow', 'logSessionWorkflow']);
    // A session's history replays against today's code (a determinism break fails here).
    for (const { workflowId } of sessions) {
      const history = await stack.client.workflow.getHandle(workflowId).fetchHistory();
      await Worker.runReplayHistory(
        { workflowsPath: WORKFLOWS_PATH, replayName: 'logs-replay', dataConverter: stack.dataConverter },
        history,
        workflowId,
      );
    }
  });

  it("prints a long log's last MiB from a line start by default, and all of it with --all", async () => {
    const { experimentId, handle } = await submit('a long log', { STEPS: '40000', STEP_SECONDS: '0', VAL_BPB: '1.3' });
    expect((await handle.result()).status).toBe('completed');

    const tail = await runCli(cliEnv(), ['logs', experimentId]);
    expect(tail.exitCode, tail.stderr as string).toBe(0);
    expect(tail.stderr).toMatch(/the log has \d+ bytes; showing its last 1048576 \(--all for everything\)/);
    expect(Buffer.byteLength(tail.stdout as string)).toBeLessThanOrEqual(1 << 20);
    expect(tail.stdout).toMatch(/^step \d{5}\/40000 \| loss /);
    expect(tail.stdout).toMatch(/val_bpb:\s+1\.3/);

    const all = await runCli(cliEnv(), ['logs', '--all', experimentId]);
    expect(all.exitCode).toBe(0);
    expect(all.stdout).toContain('step 00001/40000');
    expect((all.stdout as string).endsWith(tail.stdout as string)).toBe(true);
    expect(Buffer.byteLength(all.stdout as string)).toBeGreaterThan(1 << 20);
  });

  it('reads the shipped log from the fleet store when the host is gone, and says so', async () => {
    const { experimentId, handle } = await submit('a host that goes away', {
      VAL_BPB: '1.4',
      API_TOKEN: 'tok-ship-4f9a2c7e1b',
      PRINT_SECRETS: 'API_TOKEN',
    });
    expect((await handle.result()).status).toBe('completed');
    const fromHost = await runCli(cliEnv(), ['logs', experimentId]);
    expect(fromHost.exitCode).toBe(0);
    expect(fromHost.stderr).toContain(`expctl: ${experimentId}: attempt 1, read from the host ${HOST}`);
    // Shipped whole at exit, the secret value scrubbed before it left the host.
    const shipped = (await shippedLog(experimentId, 1))!;
    expect(shipped).toMatchObject({ attempt: 1, host: HOST, complete: true });
    const text = await shippedText(shipped);
    expect(text).toContain('=[redacted]\n');
    expect(text).not.toContain('tok-ship-4f9a2c7e1b');
    for await (const object of store.listObjects())
      expect((await store.getBytes(object.sha256)).includes('tok-ship-4f9a2c7e1b')).toBe(false);
    const record = await stack.catalog.get(experimentId);
    expect(record?.status).toBe('completed');
    await stack.gpuWorker!.shutdown();

    const started = Date.now();
    const logs = await runCli(cliEnv(), ['logs', experimentId]);
    const seconds = (Date.now() - started) / 1000;
    expect(logs.exitCode, logs.stderr as string).toBe(0);
    expect(logs.stderr).toContain(
      `expctl: ${experimentId}: the worker host ${HOST} did not answer; attempt 1, read from the fleet store (complete)`,
    );
    expect(logs.stderr).not.toContain('read from the host');
    expect(logs.stdout).toBe(fromHost.stdout);
    expect(logs.stdout).toMatch(/val_bpb:\s+1\.4/);
    expect(logs.stdout).not.toContain('tok-ship-4f9a2c7e1b');
    // The host queue's 10 s, plus the CLI's start and a loaded machine's slack.
    expect(seconds).toBeLessThan(45);

    // With no shipped copy either, the answer says both.
    for (const entry of await store.listDocuments(`runs/${experimentId}/`)) await store.deleteDocument(entry.name);
    const gone = await runCli(cliEnv(), ['logs', experimentId]);
    expect(gone.exitCode).toBe(1);
    expect(gone.stderr).toContain(`the worker host ${HOST} did not answer within 10 s: it is offline or unreachable`);
    expect(gone.stderr).toContain('the fleet store has no shipped log of attempt 1');
  });
});
