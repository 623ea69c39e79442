import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import type { ExperimentRequestInput } from '../../src/domain/request.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery, tagStateQuery } from '../../src/workflows/definitions.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { waitFor } from '../helpers/wait.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { fileExists } from '../helpers/files.js';

let stack: TestStack;
let source: { repo: string; commit: string };

function request(overrides: Partial<ExperimentRequestInput> & { tag: string }): ExperimentRequestInput {
  return {
    hypothesis: 'test hypothesis',
    category: 'hyperparams',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 30,
    ...overrides,
  };
}

async function run(overrides: Partial<ExperimentRequestInput> & { tag: string }): Promise<ExperimentResult> {
  const { handle } = await submitExperiment(stack.client, request(overrides));
  return handle.result();
}

beforeAll(async () => {
  stack = await startStack({ name: 'lifecycle', host: 'lifehost', cpuSlots: 4 });
  source = await makeRepo({ 'config.json': '{"lr": 0.1}', 'broken.json': '{"lr": ' });
});
afterAll(async () => stack?.stop());

describe('decisions on a tag', () => {
  it('keeps the first run, discards a worse one, flags a near miss, keeps an improvement', async () => {
    const first = await run({ tag: 'decide', env: { VAL_BPB: '1.500000' } });
    expect(first).toMatchObject({
      status: 'completed',
      decision: 'keep',
      action: 'keep_commit',
      metric: 1.5,
      best: 1.5,
      delta: null,
      near_miss: false,
      gpu: expect.stringMatching(/^lifehost\/cpu\d$/),
      worker: 'lifehost',
    });

    const worse = await run({ tag: 'decide', env: { VAL_BPB: '1.600000' } });
    expect(worse).toMatchObject({
      status: 'completed',
      decision: 'discard',
      action: 'git_reset',
      metric: 1.6,
      best: 1.5,
      near_miss: false,
    });
    expect(worse.delta).toBeCloseTo(0.1, 9);

    const near = await run({ tag: 'decide', env: { VAL_BPB: '1.501000' } });
    expect(near).toMatchObject({ decision: 'discard', near_miss: true, best: 1.5 });

    const tie = await run({ tag: 'decide', env: { VAL_BPB: '1.500000' } });
    expect(tie).toMatchObject({ decision: 'discard', action: 'git_reset' });

    const better = await run({ tag: 'decide', env: { VAL_BPB: '1.400000' } });
    expect(better).toMatchObject({ decision: 'keep', action: 'keep_commit', best: 1.4 });
    expect(better.delta).toBeCloseTo(-0.1, 9);
  });

  it('counts consecutive crashes, asks to abort at three, and resets on a success', async () => {
    const crashes: ExperimentResult[] = [];
    for (let i = 0; i < 3; i++) crashes.push(await run({ tag: 'crashy', env: { MODE: 'fail' } }));
    expect(crashes.map((r) => [r.status, r.consecutive_crashes, r.should_abort])).toEqual([
      ['command_failed', 1, false],
      ['command_failed', 2, false],
      ['command_failed', 3, true],
    ]);
    const success = await run({ tag: 'crashy', env: { VAL_BPB: '2.0' } });
    expect(success).toMatchObject({
      status: 'completed',
      decision: 'keep',
      consecutive_crashes: 0,
      should_abort: false,
    });
  });
});

describe('failures land in named states', () => {
  it('a non-zero exit is command_failed with the exit code and the log tail', async () => {
    const { handle } = await submitExperiment(stack.client, request({ tag: 'fail', env: { MODE: 'fail' } }));
    const result = await handle.result();
    expect(result.status).toBe('command_failed');
    expect(result.reason).toBe('training exited with exit code 1; last error line: ValueError: boom');
    const state = await handle.query(experimentStateQuery);
    expect(state.training?.exitCode).toBe(1);
    expect(state.training?.logTail).toContain('ValueError: boom');
  });

  it("a crash's reason quotes the traceback's last line, scrubbed and safe on a terminal", async () => {
    const password = 'hunter2-not-for-logs';
    const failing = await makeRepo({}, path.join(FIXTURES, 'scripts', 'raise_train.py'));
    const result = await run({
      tag: 'fail',
      repo: failing.repo,
      commit: failing.commit,
      env: { DATA_URL: `postgres://trainer:${password}@db.internal:5432/runs` },
    });
    expect(result.status).toBe('command_failed');
    expect(result.reason).toMatch(
      /^training exited with exit code 1; last error line: ConnectionError: cannot reach \S*\[redacted\]\S*$/,
    );
    expect(result.reason).not.toContain(password);
    expect(result.reason).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
  });

  it('exit 0 without a metric block is command_failed', async () => {
    const result = await run({ tag: 'fail', env: { MODE: 'nometric' } });
    expect(result).toMatchObject({
      status: 'command_failed',
      reason: 'training exited 0 but it printed no --- metric block',
    });
  });

  it('CUDA out of memory is oom and is not retried', async () => {
    const { handle } = await submitExperiment(stack.client, request({ tag: 'oom', env: { MODE: 'oom' } }));
    const result = await handle.result();
    expect(result.status).toBe('oom');
    expect((await handle.query(experimentStateQuery)).attempts).toBe(1);
  });

  it('a run that ignores SIGTERM past its kill limit is timed_out, discarded with a reset, and leaves no process', async () => {
    const pidFile = path.join(stack.workDir, 'hang.pid');
    // A kill limit well above the interpreter's start-up on a loaded machine: the script must have run.
    const result = await run({
      tag: 'timeout',
      timeBudgetSeconds: 1,
      timeoutSeconds: 8,
      env: { MODE: 'hang', PID_FILE: pidFile },
    });
    expect(result).toMatchObject({ status: 'timed_out', decision: 'discard', action: 'git_reset', rule: 'timed_out' });
    const pid = Number(await fs.readFile(pidFile, 'utf8'));
    expect(processAlive(pid)).toBe(false);
  });

  it('cancel during training ends canceled and leaves no process', async () => {
    const pidFile = path.join(stack.workDir, 'cancel.pid');
    const { handle } = await submitExperiment(
      stack.client,
      request({ tag: 'cancel', env: { MODE: 'slow', PID_FILE: pidFile } }),
    );
    await waitFor(
      async () => (await handle.query(experimentStateQuery)).status === 'running' && (await fileExists(pidFile)),
      30_000,
    );
    const pid = Number(await fs.readFile(pidFile, 'utf8'));
    expect(processAlive(pid)).toBe(true);
    // The catalog (expctl history, the report) says `running` while it trains, not only at the end.
    const record = await stack.catalog.get(handle.workflowId);
    expect(record).toMatchObject({ status: 'running' });
    expect(record?.events.map((event) => event.status)).toContain('running');
    await handle.cancel();
    const result = await handle.result();
    expect(result.status).toBe('canceled');
    expect(processAlive(pid)).toBe(false);
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.slots.filter((s) => s.lease?.experimentId === handle.workflowId)).toHaveLength(0);
  });
});

describe('validation', () => {
  const bad: [string, Partial<ExperimentRequestInput>, RegExp][] = [
    [
      'missing script',
      { command: ['python3', 'missing.py'] },
      /missing\.py \(named in the command\) does not exist in commit/,
    ],
    [
      'unknown program',
      { command: ['no-such-interpreter-xyz', 'train.py'] },
      /command "no-such-interpreter-xyz" is not installed on lifehost/,
    ],
    [
      'program path not in tree',
      { command: ['./bin/run.sh'] },
      /the command's program \.\/bin\/run\.sh does not exist in commit/,
    ],
    ['commit not in repo', { commit: 'f'.repeat(40) }, /commit f{40} does not exist/],
    ['repo is not git', { repo: '/tmp' }, /repo \/tmp is not a git repository on this host/],
    ['config missing', { configPath: 'nope.json' }, /config nope\.json does not exist in commit/],
    ['config malformed', { configPath: 'broken.json' }, /config broken\.json is not valid JSON/],
    ['checkpoint missing', { checkpoint: 'ckpt/model.pt' }, /checkpoint ckpt\/model\.pt was not found/],
    ['dataset missing', { datasets: ['fineweb/v3'] }, /dataset fineweb\/v3 is not present on lifehost/],
    [
      'class nobody has',
      { requirements: { acceleratorClass: 'h100', gpuMemoryMb: 0, runtimeTags: [] } },
      /no slot in the fleet can ever satisfy accelerator=h100/,
    ],
    [
      'too much memory',
      { requirements: { acceleratorClass: 'any', gpuMemoryMb: 10_000_000, runtimeTags: [] } },
      /no slot in the fleet can ever satisfy .*memory=10000000 MB/,
    ],
    [
      'runtime tag nobody has',
      { requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['cuda-99'] } },
      /missing runtime tags cuda-99/,
    ],
  ];

  it.each(bad)('%s → validation_failed with a specific reason, no lease taken', async (_name, overrides, reason) => {
    const { handle } = await submitExperiment(stack.client, request({ tag: 'invalid', ...overrides }));
    const result = await handle.result();
    expect(result.status).toBe('validation_failed');
    expect(result.reason).toMatch(reason);
    const state = await handle.query(experimentStateQuery);
    expect(state.placement).toBeNull();
    expect(state.timeline.map((t) => t.status)).not.toContain('queued');
    expect(state.attempts).toBe(0);
  });

  it('rejects malformed requests before anything starts, naming each field', async () => {
    await expect(
      submitExperiment(stack.client, {
        ...request({ tag: 'bad tag!' }),
        category: 'vibes' as never,
        timeBudgetSeconds: -5,
        surprise: 1,
      } as never),
    ).rejects.toThrow(/tag: .*category: Invalid option.*timeBudgetSeconds: Too small.*Unrecognized key: "surprise"/s);
  });
});

describe('idempotency and concurrency', () => {
  it('the same idempotency key submitted twice concurrently gives one experiment', async () => {
    const input = request({ tag: 'idem', idempotencyKey: 'try-42', env: { VAL_BPB: '1.0' } });
    const [a, b] = await Promise.all([submitExperiment(stack.client, input), submitExperiment(stack.client, input)]);
    expect(a.experimentId).toBe(b.experimentId);
    const [ra, rb] = await Promise.all([a.handle.result(), b.handle.result()]);
    expect(ra).toEqual(rb);
    const again = await submitExperiment(stack.client, input);
    expect(await again.handle.result()).toEqual(ra);
    const tag = await stack.client.workflow.getHandle(tagWorkflowId('idem')).query(tagStateQuery);
    expect(tag.counts.total).toBe(1);
  });

  it('8 experiments finishing together leave the tag consistent', async () => {
    const values = [1.9, 1.8, 1.7, 1.6, 1.5, 1.4, 1.3, 1.2];
    const modes = ['ok', 'ok', 'fail', 'ok', 'ok', 'fail', 'ok', 'ok'];
    const results = await Promise.all(
      values.map((v, i) => run({ tag: 'burst', env: { VAL_BPB: String(v), MODE: modes[i]! } })),
    );
    const tag = await stack.client.workflow.getHandle(tagWorkflowId('burst')).query(tagStateQuery);
    expect(tag.counts).toMatchObject({
      total: 8,
      crashed: 2,
      kept: results.filter((r) => r.decision === 'keep').length,
      discarded: results.filter((r) => r.decision === 'discard').length,
    });
    expect(tag.counts.kept + tag.counts.discarded).toBe(6);
    expect(tag.best.cpu?.metric).toBe(1.2);
    // Applied serially: sequence numbers 1..8, each decision's best is the running minimum in that order.
    expect(tag.recent.map((d) => d.sequence)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    let best = Infinity;
    for (const decision of tag.recent) {
      if (decision.metric !== null) {
        expect(decision.decision).toBe(decision.metric < best ? 'keep' : 'discard');
        best = Math.min(best, decision.metric);
      }
      expect(decision.best).toBe(Number.isFinite(best) ? best : null);
    }
    const last = tag.recent.at(-1)!;
    expect(tag.consecutiveCrashes).toBe(last.consecutiveCrashes);
  });
});
