import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitBatch } from '../../src/client/batches.js';
import { submitExperiment } from '../../src/client/experiments.js';
import { WORKFLOWS_PATH } from '../../src/roots/orchestrator.js';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import type { BatchResult } from '../../src/workflows/batch-state.js';
import { experimentStateQuery, tagStateQuery } from '../../src/workflows/definitions.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { RESULT_KEYS, runCli } from '../helpers/cli.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { makeVariantRepo, VARIANT_COMMAND, variantCommit } from '../helpers/variants.js';
import { resultWithin } from '../helpers/wait.js';

// K variants of one base, decided as a tournament against the tag's best (issue: parallel search).
let stack: TestStack;
let repo: string;
let base: string;
/** Finished batches and their children, replayed at the end. */
const finished: string[] = [];

const COMMAND = VARIANT_COMMAND;

/** A commit on the base that changes variant.txt to `settings`; the branch stays at the base. */
const variant = (settings: string, subject: string) => variantCommit(repo, base, settings, subject);

const cliEnv = () => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
});

/** A run of the base itself, so the tag has a best (1.0) before the batch. */
async function baseline(tag: string): Promise<void> {
  const { handle } = await submitExperiment(stack.client, {
    tag,
    hypothesis: 'the baseline',
    category: 'other',
    command: COMMAND,
    repo,
    commit: base,
  });
  expect((await resultWithin(handle, 200_000)).decision).toBe('keep');
}

beforeAll(async () => {
  stack = await startStack({ name: 'batch', host: 'batchhost', cpuSlots: 4 });
  ({ repo, commit: base } = await makeVariantRepo());
});
afterAll(async () => stack?.stop());

describe('expctl batch', () => {
  it('keeps exactly the best improving variant, counts the crash once and moves the best once', async () => {
    await baseline('tourney');
    const crash = await variant('MODE=fail', 'a change that crashes');
    const winner = await variant('VAL_BPB=0.9', 'a change that helps');
    const worse = await variant('VAL_BPB=1.05', 'a change that hurts');
    const worst = await variant('VAL_BPB=1.1', 'a change that hurts more');
    const run = await runCli(
      cliEnv(),
      [
        'batch',
        '--tag',
        'tourney',
        '--category',
        'hyperparams',
        '--time-budget',
        '30',
        '--base',
        base,
        crash,
        winner,
        worse,
        worst,
        '--json',
        '--',
        ...COMMAND,
      ],
      { cwd: repo },
    );
    let result: BatchResult;
    try {
      result = JSON.parse(run.stdout as string) as BatchResult;
    } catch {
      throw new Error(`expctl batch printed no JSON (exit ${run.exitCode}):\n${run.stdout}\n${run.stderr}`);
    }
    expect(run.exitCode).toBe(0);
    expect(result).toMatchObject({ tag: 'tourney', base, action: 'advance', commit: winner, best: 0.9 });
    expect(result.children).toHaveLength(4);
    for (const child of result.children) expect(Object.keys(child)).toEqual(expect.arrayContaining([...RESULT_KEYS]));
    const byCommit = (commit: string) =>
      result.children[[crash, winner, worse, worst].indexOf(commit)] as ExperimentResult;
    expect(byCommit(crash)).toMatchObject({ status: 'command_failed', decision: null, consecutive_crashes: 1 });
    expect(byCommit(winner)).toMatchObject({ status: 'completed', decision: 'keep', metric: 0.9, rule: 'improved' });
    expect(byCommit(worse)).toMatchObject({ status: 'completed', decision: 'discard', rule: 'not_improved' });
    expect(byCommit(worst)).toMatchObject({ status: 'completed', decision: 'discard', rule: 'not_improved' });
    expect(result.winner).toBe(byCommit(winner).experiment_id);
    // A child's best and delta refer to one baseline, the best before the batch (1.0), as `run`
    // prints them; the winner's best is its own metric; the batch's best is the best after it.
    expect(byCommit(winner).best).toBe(0.9);
    expect(byCommit(winner).delta).toBeCloseTo(-0.1, 6);
    for (const loser of [byCommit(worse), byCommit(worst)]) {
      expect(loser.best).toBe(1.0);
      expect(loser.metric! - loser.delta!).toBeCloseTo(loser.best!, 6);
    }
    expect(byCommit(worse).delta).toBeCloseTo(0.05, 6);
    expect(byCommit(crash)).toMatchObject({ best: 1.0, delta: null });
    finished.push(result.batch_id, ...result.children.map((c) => c.experiment_id!));
    // Each child ran its own commit, on the one accelerator class the batch chose.
    for (const [index, commit] of [crash, winner, worse, worst].entries()) {
      const state = await stack.client.workflow
        .getHandle(result.children[index]!.experiment_id!)
        .query(experimentStateQuery);
      expect(state.request.commit).toBe(commit);
      expect(state.request.requirements.acceleratorClass).toBe('cpu');
    }
    // The tag moved once: one keep, one crash, all five runs counted once, the best is the winner.
    const tag = await stack.client.workflow.getHandle(tagWorkflowId('tourney')).query(tagStateQuery);
    expect(tag.counts).toMatchObject({ total: 5, kept: 2, discarded: 2, crashed: 1 });
    expect(tag.best.cpu).toMatchObject({ experimentId: result.winner, metric: 0.9, commit: winner });
    expect(tag.consecutiveCrashes).toBe(0);
    expect(new Set(tag.recent.map((d) => d.experimentId)).size).toBe(5);
  }, 400_000);

  it('cancels the variants still going at the deadline, with that reason, and decides on the rest', async () => {
    await baseline('deadline');
    const quick = await variant('VAL_BPB=0.95', 'quick and better');
    const slow = await variant('MODE=slow', 'never finishes');
    const { handle } = await submitBatch(stack.client, {
      template: {
        tag: 'deadline',
        category: 'other',
        command: COMMAND,
        repo,
        timeBudgetSeconds: 300,
      },
      base,
      variants: [
        { commit: quick, hypothesis: 'quick' },
        { commit: slow, hypothesis: 'slow' },
      ],
      // Past the quick variant's end with room for a loaded host; the slow one is canceled at it.
      deadlineSeconds: 20,
    });
    const result = await resultWithin(handle as never, 300_000);
    const [fast, late] = (result as BatchResult).children;
    expect(fast).toMatchObject({ status: 'completed', decision: 'keep', metric: 0.95 });
    expect(late).toMatchObject({ status: 'canceled', decision: null });
    finished.push(handle.workflowId, late!.experiment_id!);
    expect(late!.reason).toMatch(/^the batch's deadline \(.+\) passed before it finished$/);
    expect(result).toMatchObject({ action: 'advance', commit: quick });
  }, 400_000);

  it('decides two batches on one tag one after the other, losing no update', async () => {
    await baseline('twice');
    const [a1, a2, b1, b2] = [
      await variant('VAL_BPB=0.97', 'a1'),
      await variant('VAL_BPB=0.99', 'a2'),
      await variant('VAL_BPB=0.96', 'b1'),
      await variant('VAL_BPB=1.2', 'b2'),
    ];
    const submit = (variants: string[]) =>
      submitBatch(stack.client, {
        template: { tag: 'twice', category: 'other', command: COMMAND, repo },
        base,
        variants: variants.map((commit) => ({ commit, hypothesis: commit.slice(0, 8) })),
      });
    const [first, second] = await Promise.all([submit([a1!, a2!]), submit([b1!, b2!])]);
    const results = (await Promise.all([first.handle.result(), second.handle.result()])) as BatchResult[];
    const tag = await stack.client.workflow.getHandle(tagWorkflowId('twice')).query(tagStateQuery);
    // Every child decided once, with its own sequence number, and the best is the best of all.
    expect(tag.counts.total).toBe(5);
    const sequences = results.flatMap((r) =>
      r.children.map((c) => tag.recent.find((d) => d.experimentId === c.experiment_id)!.sequence),
    );
    expect(new Set(sequences)).toEqual(new Set([2, 3, 4, 5]));
    expect(tag.best.cpu).toMatchObject({ metric: 0.96, commit: b1 });
    // Each batch kept at most one; b1 won its batch; a1 kept only if its batch was decided first.
    const kept = results.flatMap((r) => r.children.filter((c) => c.decision === 'keep').map((c) => c.metric));
    expect(kept).toContain(0.96);
    expect(kept.length).toBeLessThanOrEqual(2);
    for (const r of results) expect(r.children.filter((c) => c.decision === 'keep').length).toBeLessThanOrEqual(1);
  }, 400_000);

  it('refuses a variant that is not a child of the base before anything starts', async () => {
    const stray = await variant('VAL_BPB=0.5', 'a stray');
    const grandchild = await variantCommit(repo, stray, 'VAL_BPB=0.4', 'on top of the stray');
    const run = await runCli(
      cliEnv(),
      [
        'batch',
        '--tag',
        'refused',
        '--category',
        'other',
        '--base',
        base,
        stray,
        grandchild,
        '--json',
        '--',
        ...COMMAND,
      ],
      { cwd: repo },
    );
    expect(run.exitCode).toBe(2);
    const refusal = JSON.parse(run.stdout as string) as { batch_id: null; reason: string };
    expect(refusal.batch_id).toBeNull();
    expect(refusal.reason).toContain(`commit ${grandchild} is not a child of the base ${base.slice(0, 12)}`);
  }, 120_000);
});

describe('determinism', () => {
  it("batch and batch-child histories replay against today's workflow code", async () => {
    expect(finished.length).toBeGreaterThanOrEqual(7);
    const histories = await Promise.all(
      [...finished, tagWorkflowId('tourney')].map(async (workflowId) => ({
        workflowId,
        history: await stack.client.workflow.getHandle(workflowId).fetchHistory(),
      })),
    );
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories(
      { workflowsPath: WORKFLOWS_PATH, replayName: 'batch-replay', dataConverter: stack.dataConverter },
      histories,
    ))
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    expect(failures).toEqual([]);
  });
});
