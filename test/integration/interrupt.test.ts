import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitBatch } from '../../src/client/batches.js';
import { experimentState } from '../../src/client/experiments.js';
import { EXIT_CODES } from '../../src/domain/exit-codes.js';
import { EXPCTL } from '../helpers/cli.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { makeVariantRepo, variantCommit, VARIANT_COMMAND } from '../helpers/variants.js';
import { eventually } from '../helpers/wait.js';

// Ctrl-C of a waiting `run`, `batch` or `wait`: one object that says what goes on and how to pick
// it up again, exit 130; the run itself is not touched and ends as it would have.
let stack: TestStack;
let repo: string;
let base: string;
/** Training that takes about 15 s, so the interruption lands while it runs. */
const SLOW = 'STEPS=30 STEP_SECONDS=0.5';

beforeAll(async () => {
  stack = await startStack({ name: 'interrupt', host: 'inthost', cpuSlots: 2 });
  ({ repo, commit: base } = await makeVariantRepo(`VAL_BPB=1.0 ${SLOW}`));
});
afterAll(async () => stack?.stop());

function expctl(args: string[]): ResultPromise<{ reject: false; cwd: string; env: Record<string, string> }> {
  return execa(process.execPath, [EXPCTL, ...args], {
    reject: false,
    cwd: repo,
    env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace, EXPCTL_CATALOG: stack.catalogPath },
  });
}

/** Every JSON line the child wrote to stderr so far (its progress events). */
function stderrEvents(seen: { text: string }): Record<string, unknown>[] {
  return seen.text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

const isRunning = async (id: string) => (await experimentState(stack.client, id))?.status === 'running';

describe('Ctrl-C of a command that waits', () => {
  it('run: prints the experiment, its state and `expctl wait ID`, exits 130; the run completes', async () => {
    const child = expctl([
      'run',
      '--tag',
      'int-run',
      '--hypothesis',
      'interrupted while it trains',
      '--category',
      'other',
      '--json',
      '--',
      ...VARIANT_COMMAND,
    ]);
    const seen = { text: '' };
    child.stderr!.on('data', (chunk: Buffer) => (seen.text += chunk.toString()));
    const id = await eventually(async () => {
      const running = stderrEvents(seen).find((event) => event.status === 'running');
      return running?.experiment_id as string | undefined;
    }, 120_000);
    child.kill('SIGINT');
    const interrupted = await child;
    expect(interrupted.exitCode).toBe(EXIT_CODES.interrupted);
    expect(JSON.parse(interrupted.stdout as string)).toEqual({
      error: 'interrupted',
      message: `interrupted; experiment ${id} goes on (running): \`expctl wait ${id}\` picks it up again`,
      experiment_id: id,
      status: 'running',
      resume: `expctl wait ${id}`,
    });
    expect(interrupted.stderr).toContain(`expctl: interrupted; experiment ${id} goes on (running)`);

    const resumed = await expctl(['wait', id, '--json']);
    expect(resumed.exitCode).toBe(0);
    expect(JSON.parse(resumed.stdout as string)).toMatchObject({ experiment_id: id, status: 'completed' });
  });

  it('wait on a batch: prints the batch, its state and each child, exits 130; the batch is decided', async () => {
    const commits = [
      await variantCommit(repo, base, `VAL_BPB=0.9 ${SLOW}`, 'helps'),
      await variantCommit(repo, base, `VAL_BPB=1.1 ${SLOW}`, 'hurts'),
    ];
    const { batchId, members } = await submitBatch(stack.client, {
      template: { tag: 'int-batch', category: 'other', command: VARIANT_COMMAND, repo },
      base,
      variants: commits.map((commit) => ({ commit, hypothesis: commit.slice(0, 8) })),
    });
    const child = expctl(['wait', batchId, '--json']);
    const seen = { text: '' };
    child.stderr!.on('data', (chunk: Buffer) => (seen.text += chunk.toString()));
    // It says when it waits (from then on, Ctrl-C is reported), and both children run at once.
    await eventually(async () => stderrEvents(seen).find((event) => event.event === 'waiting'), 120_000);
    // Once, first; progress events of the children may follow.
    expect(stderrEvents(seen).filter((event) => event.event !== 'progress')).toEqual([
      { event: 'waiting', batch_id: batchId, resume: `expctl wait ${batchId}` },
    ]);
    expect(stderrEvents(seen)[0]).toMatchObject({ event: 'waiting' });
    await eventually(
      async () => ((await Promise.all(members.map(isRunning))).every(Boolean) ? true : undefined),
      120_000,
    );
    child.kill('SIGINT');
    const interrupted = await child;
    expect(interrupted.exitCode).toBe(EXIT_CODES.interrupted);
    expect(JSON.parse(interrupted.stdout as string)).toEqual({
      error: 'interrupted',
      message: `interrupted; batch ${batchId} goes on (running): \`expctl wait ${batchId}\` picks it up again`,
      batch_id: batchId,
      status: 'running',
      children: members.map((member) => ({ experiment_id: member, status: 'running' })),
      resume: `expctl wait ${batchId}`,
    });

    const resumed = await expctl(['wait', batchId, '--json']);
    expect(resumed.exitCode).toBe(0);
    expect(JSON.parse(resumed.stdout as string)).toMatchObject({ batch_id: batchId, action: 'advance' });
  });
});
