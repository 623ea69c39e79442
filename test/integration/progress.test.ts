import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import { ENCRYPTED_ENCODING } from '../../src/security/codec.js';
import type { BatchResult } from '../../src/workflows/batch-state.js';
import { EXPCTL, runCli } from '../helpers/cli.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { makeVariantRepo, VARIANT_COMMAND, variantCommit } from '../helpers/variants.js';
import { eventually } from '../helpers/wait.js';

// Live progress as an agent reads it: autoresearch's real `\r` progress lines, heartbeated through
// the encrypting payload codec, read back by `expctl run` and `expctl batch` processes from stderr.
let stack: TestStack;
let repo: string;
let base: string;

const cliEnv = () => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
});

/** Long enough for several 2 s heartbeats of the training loop (0.1 s steps) on a loaded host. */
const TRAINING = ['--time-budget', '10', '--env', 'STEP_SECONDS=0.1'];

interface ProgressEvent {
  event: string;
  experiment_id: string;
  batch_id?: string;
  variant?: number;
  status: string | null;
  percent: number | null;
  step: number | null;
  loss: number | null;
  remaining_seconds: number | null;
  dt_ms: number | null;
  tok_per_sec: number | null;
  mfu_percent: number | null;
  epoch: number | null;
  elapsed_seconds: number | null;
  kill_limit_remaining_seconds: number | null;
}

/** Every JSON line the command wrote on stderr (anything else there is not progress). */
function stderrEvents(stderr: string): ProgressEvent[] {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as ProgressEvent);
}

/** The events of one run that show training: step, percent, loss and time left all read from the line. */
function expectTrainingProgress(events: ProgressEvent[], label: string): void {
  // After training (evaluating) the events keep the last line read.
  const training = events.filter((e) => e.step !== null);
  const whileRunning = training.filter((e) => e.status === 'running');
  expect(
    whileRunning.length,
    `${label}: events with a step\n${JSON.stringify(events, null, 1)}`,
  ).toBeGreaterThanOrEqual(2);
  for (const event of training) {
    expect(['running', 'evaluating']).toContain(event.status);
    expect(event.percent).toBeGreaterThanOrEqual(0);
    expect(event.percent).toBeLessThanOrEqual(100);
    expect(event.loss).toBeGreaterThan(2.5);
    expect(event.remaining_seconds).toBeGreaterThanOrEqual(0);
    // The rest of the line survives too (the fixture prints mfu 38.2% and epoch 1).
    expect(event).toMatchObject({ mfu_percent: 38.2, epoch: 1 });
    expect(event.dt_ms).toBeGreaterThan(0);
    expect(event.tok_per_sec).toBeGreaterThan(0);
    // A 10 s budget is killed at 70 s (the minimum headroom of a minute).
    expect(event.kill_limit_remaining_seconds! + event.elapsed_seconds!).toBeCloseTo(70, 0);
  }
  const steps = training.map((e) => e.step!);
  for (let i = 1; i < steps.length; i++)
    expect(steps[i]!, `${label}: steps ${steps}`).toBeGreaterThanOrEqual(steps[i - 1]!);
  expect(steps.at(-1)!, `${label}: steps ${steps}`).toBeGreaterThan(steps[0]!);
}

beforeAll(async () => {
  stack = await startStack({ name: 'progress', host: 'proghost', cpuSlots: 2 });
  ({ repo, commit: base } = await makeVariantRepo(
    'VAL_BPB=1.0',
    path.join(FIXTURES, 'scripts', 'autoresearch_train.py'),
  ));
});
afterAll(async () => stack?.stop());

describe('live progress through encrypted heartbeats', () => {
  it('expctl run streams the latest progress line as JSON events on stderr', async () => {
    const child = runCli(
      cliEnv(),
      [
        'run',
        '--tag',
        'progress',
        '--hypothesis',
        'the baseline',
        '--category',
        'other',
        ...TRAINING,
        '--json',
        '--',
        ...VARIANT_COMMAND,
      ],
      { cwd: repo },
    );
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // While it trains, the server holds the heartbeat encrypted: what the CLI reads is ciphertext.
    const experimentId = await eventually(async () => stderrEvents(stderr)[0]?.experiment_id, 120_000);
    const encoding = await eventually(async () => {
      const description = await stack.client.workflow.getHandle(experimentId).describe();
      const training = description.raw.pendingActivities?.find((a) => a.activityType?.name === 'runTraining');
      const payload = training?.heartbeatDetails?.payloads?.[0];
      return payload ? Buffer.from(payload.metadata!.encoding!).toString('utf8') : undefined;
    }, 120_000);
    expect(encoding).toBe(ENCRYPTED_ENCODING);

    const run = await child;
    const result = JSON.parse(run.stdout as string) as ExperimentResult;
    expect(run.exitCode, run.stderr as string).toBe(0);
    expect(result).toMatchObject({ experiment_id: experimentId, status: 'completed', decision: 'keep' });
    const events = stderrEvents(run.stderr as string);
    expect(events.filter((e) => e.event !== 'progress')).toEqual([]);
    expect(new Set(events.map((e) => e.experiment_id))).toEqual(new Set([experimentId]));
    expectTrainingProgress(events, experimentId);
  }, 300_000);

  it('expctl batch streams one progress stream per variant, each carrying its batch and variant', async () => {
    const variants = [
      await variantCommit(repo, base, 'VAL_BPB=0.9', 'a change that helps'),
      await variantCommit(repo, base, 'VAL_BPB=1.1', 'a change that hurts'),
    ];
    const run = await runCli(
      cliEnv(),
      [
        'batch',
        '--tag',
        'progress',
        '--category',
        'other',
        ...TRAINING,
        '--base',
        base,
        ...variants,
        '--json',
        '--',
        ...VARIANT_COMMAND,
      ],
      { cwd: repo },
    );
    let result: BatchResult;
    try {
      result = JSON.parse(run.stdout as string) as BatchResult;
    } catch {
      throw new Error(`expctl batch printed no JSON (exit ${run.exitCode}):\n${run.stdout}\n${run.stderr}`);
    }
    expect(run.exitCode, run.stderr as string).toBe(0);
    expect(result.children.map((c) => c.status)).toEqual(['completed', 'completed']);
    const all = stderrEvents(run.stderr as string);
    // First, once: what is awaited and the command that picks it up after a Ctrl-C; then progress only.
    expect(all[0]).toEqual({ event: 'waiting', batch_id: result.batch_id, resume: `expctl wait ${result.batch_id}` });
    const events = all.slice(1);
    expect(events.filter((e) => e.event !== 'progress')).toEqual([]);
    expect(new Set(events.map((e) => e.batch_id))).toEqual(new Set([result.batch_id]));
    for (const [index, child] of result.children.entries()) {
      const mine = events.filter((e) => e.experiment_id === child.experiment_id);
      expect(new Set(mine.map((e) => e.variant))).toEqual(new Set([index + 1]));
      expectTrainingProgress(mine, child.experiment_id!);
    }
    expect(new Set(events.map((e) => e.experiment_id))).toEqual(new Set(result.children.map((c) => c.experiment_id)));
  }, 300_000);

  it('expctl wait on a batch started with --detach streams its variants the same way', async () => {
    const variant = await variantCommit(repo, base, 'VAL_BPB=0.7', 'a change that helps most');
    const args = ['batch', '--tag', 'progress', '--category', 'other', ...TRAINING, '--base', base, variant];
    const detached = await runCli(cliEnv(), [...args, '--detach', '--json', '--', ...VARIANT_COMMAND], { cwd: repo });
    expect(detached.exitCode, detached.stderr as string).toBe(0);
    const { batch_id: batchId, children } = JSON.parse(detached.stdout as string) as {
      batch_id: string;
      children: string[];
    };
    const waited = await runCli(cliEnv(), ['wait', batchId, '--json'], { cwd: repo });
    expect(waited.exitCode, waited.stderr as string).toBe(0);
    const all = stderrEvents(waited.stderr as string);
    expect(all.filter((e) => e.event === 'waiting')).toHaveLength(1);
    const events = all.filter((e) => e.event === 'progress');
    expect(events.length).toBe(all.length - 1);
    expect(new Set(events.map((e) => `${e.batch_id} ${e.variant} ${e.experiment_id}`))).toEqual(
      new Set([`${batchId} 1 ${children[0]}`]),
    );
    expectTrainingProgress(events, children[0]!);
  }, 300_000);

  it('on a terminal, expctl batch draws one bar per variant with its step, percent, loss and time left', async () => {
    const variants = [
      await variantCommit(repo, base, 'VAL_BPB=0.8', 'a change that helps more'),
      await variantCommit(repo, base, 'VAL_BPB=1.2', 'a change that hurts more'),
    ];
    const args = ['batch', '--tag', 'progress', '--category', 'other', ...TRAINING, '--base', base, ...variants];
    const command = [process.execPath, EXPCTL, ...args, '--', ...VARIANT_COMMAND].map(shellQuoted).join(' ');
    // `script` gives the command a terminal: stderr is a TTY, as when an agent's user watches it.
    const run = await execa('script', ['-qefc', command, '/dev/null'], { cwd: repo, env: cliEnv(), reject: false });
    expect(run.exitCode, run.stdout).toBe(0);
    for (const variant of ['v1', 'v2']) {
      const bar = new RegExp(
        String.raw`${variant} running \|[^|]*\| (\d+\.\d)% \| step (\d+) \| loss (\d+\.\d+) \| (\d+)s left`,
        'g',
      );
      const drawn = [...run.stdout.matchAll(bar)];
      expect(drawn.length, `${variant}'s bar:\n${run.stdout.slice(-3000)}`).toBeGreaterThan(0);
      expect(Math.max(...drawn.map((m) => Number(m[2])))).toBeGreaterThan(0);
    }
  }, 300_000);
});

/** One argument for `sh -c`, single-quoted. */
function shellQuoted(arg: string): string {
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}
