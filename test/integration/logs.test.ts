import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { WORKFLOWS_PATH } from '../../src/roots/orchestrator.js';
import { runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

// `expctl logs` as a user runs it: pages read from the host through one log session per reader,
// a follower long-polling the host (no workflow per read), and a clear answer from a host that is gone.
const HOST = 'loghost';
let stack: TestStack;
let source: { repo: string; commit: string };

const cliEnv = () => ({ TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace });

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
  stack = await startStack({ name: 'logs', host: HOST, cpuSlots: 1 });
  source = await makeRepo();
});
afterAll(async () => stack?.stop());

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

  it('says within seconds that the host holding the log is unreachable', async () => {
    const { experimentId, handle } = await submit('a host that goes away', { VAL_BPB: '1.4' });
    expect((await handle.result()).status).toBe('completed');
    await stack.gpuWorker!.shutdown();

    const started = Date.now();
    const logs = await runCli(cliEnv(), ['logs', experimentId]);
    const seconds = (Date.now() - started) / 1000;
    expect(logs.exitCode).toBe(1);
    expect(logs.stderr).toContain(`the worker host ${HOST} did not answer within 10 s: it is offline or unreachable`);
    // The host queue's 10 s, plus the CLI's start and a loaded machine's slack.
    expect(seconds).toBeLessThan(45);
  });
});
