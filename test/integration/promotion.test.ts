import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { PERMISSION_DENIED_EXIT_CODE } from '../../src/domain/authorization.js';
import { PROMOTION_CODES } from '../../src/domain/promotion.js';
import { WORKFLOWS_PATH } from '../../src/roots/orchestrator.js';
import { promotionStateQuery, type PromotionResult } from '../../src/workflows/promotion-definitions.js';
import { tagStateQuery } from '../../src/workflows/definitions.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { outputOf, runCli } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { drain, FIXTURES, issueTestCredential, startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

// Gated promotion on a real server: integrity, holdout evaluation on the fleet, approval, alias moves, rollback.
let stack: TestStack;
let source: { repo: string; commit: string };
let olga: ReturnType<typeof issueTestCredential>;
let sam: ReturnType<typeof issueTestCredential>;

const cliEnv = (credentialFile: string) => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
  EXPCTL_CREDENTIAL_FILE: credentialFile,
});
const asOperator = (args: string[]) => runCli(cliEnv(olga.file), args);
const asSubmitter = (args: string[]) => runCli(cliEnv(sam.file), args);
const catalog = () => stack.catalog;
/** Workflows whose histories must replay against today's code (see the last test). */
const finished: string[] = [];
const models = () => stack.catalog.models;

let runs = 0;
/** A kept experiment (the first of its own tag) whose model scores `holdout` on the holdout split. */
async function keptRun(valBpb: number, holdout: number): Promise<string> {
  const { experimentId, handle } = await submitExperiment(stack.client, {
    tag: `promo-${++runs}`,
    hypothesis: 'a model worth promoting',
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    env: { VAL_BPB: String(valBpb), HOLDOUT_BPB: String(holdout) },
  });
  const result = await handle.result();
  expect(result).toMatchObject({ status: 'completed', decision: 'keep' });
  return experimentId;
}
async function promote(args: string[], as = asOperator) {
  const run = await as(['promote', ...args, '--json']);
  return {
    exitCode: run.exitCode,
    out: JSON.parse(run.stdout as string) as PromotionResult,
    stdout: run.stdout,
    stderr: run.stderr,
  };
}

beforeAll(async () => {
  stack = await startStack({ name: 'promotion', host: 'promohost', cpuSlots: 2 });
  source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'promote_train.py'));
  olga = issueTestCredential('olga', 'operator');
  sam = issueTestCredential('sam', 'submitter');
});
afterAll(async () => stack?.stop());

describe('refusals before anything runs', () => {
  it('an unknown or discarded experiment is refused with its code (exit 2)', async () => {
    const unknown = await asOperator(['promote', 'exp-nothing-here', '--model', 'lm', '--json']);
    expect(unknown.exitCode).toBe(2);
    expect(JSON.parse(unknown.stdout as string)).toMatchObject({ error: PROMOTION_CODES.notFound });

    const kept = await keptRun(1.0, 1.0);
    const wrongArtifact = await asOperator(['promote', kept, '--model', 'lm-x', '--artifact', 'nope.bin', '--json']);
    expect(wrongArtifact.exitCode).toBe(2);
    expect(JSON.parse(wrongArtifact.stdout as string)).toEqual({
      error: PROMOTION_CODES.noArtifact,
      message: expect.stringMatching(/has no artifact nope.bin \(it has model.txt\)/),
    });
    expect(await models().promotions('lm-x')).toEqual([]);
  });
});

describe('holdout gate, alias moves and rollback', () => {
  it('promotes, blocks a regression with an alert, promotes again, and rolls back', async () => {
    const first = await keptRun(1.0, 1.0);
    const promoted = await promote([first, '--model', 'lm']);
    expect(promoted.exitCode, promoted.stderr as string).toBe(0);
    expect(outputOf('promote', promoted)).toMatchObject({
      status: 'promoted',
      code: PROMOTION_CODES.promoted,
      version: 1,
      candidate_metric: 1.0,
      incumbent_version: null,
      requested_by: 'olga',
    });
    // The holdout evaluation is an experiment of its own: recorded, by the promoter, outside the tag's decisions.
    const holdout = (await catalog().get(promoted.out.holdout_experiment_id!))!;
    expect(holdout).toMatchObject({
      status: 'completed',
      originKind: 'promotion',
      originId: promoted.out.promotion_id,
      submittedBy: 'olga',
      decision: null,
      sequence: null,
    });
    expect(holdout.request.env).toMatchObject({ EXPCTL_EVALUATE: 'holdout' });
    finished.push(promoted.out.promotion_id, promoted.out.holdout_experiment_id!);
    const tag = await stack.client.workflow.getHandle(tagWorkflowId(holdout.tag)).query(tagStateQuery);
    expect(tag.recent.map((r) => r.experimentId)).toEqual([first]);

    // Better on validation, but worse on the holdout split by 50 %: blocked, with an alert.
    const regressing = await keptRun(0.9, 1.5);
    const blocked = await promote([regressing, '--model', 'lm']);
    expect(blocked.exitCode).toBe(3);
    expect(blocked.out).toMatchObject({
      status: 'blocked',
      code: PROMOTION_CODES.regression,
      candidate_metric: 1.5,
      incumbent_version: 1,
      incumbent_metric: 1.0,
    });
    expect(blocked.out.reason).toMatch(/holdout val_bpb 1.5 vs incumbent 1 .*more than the allowed 0.01/);
    expect(await catalog().datasets.alerts()).toContainEqual(
      expect.objectContaining({
        kind: 'promotion_blocked',
        subject: blocked.out.promotion_id,
        code: PROMOTION_CODES.regression,
        message: expect.stringMatching(/^lm@staging: candidate /),
      }),
    );
    expect(await models().aliases('lm')).toEqual({ staging: 1 });

    // Within the threshold (0.5 % worse, threshold 1 %): promoted as version 2.
    const second = await keptRun(0.8, 1.005);
    const again = await promote([second, '--model', 'lm']);
    expect(again.out).toMatchObject({ status: 'promoted', version: 2, incumbent_version: 1 });
    expect(await models().aliases('lm')).toEqual({ staging: 2 });

    // A submitter may not roll back; an operator may, and the alias holds version 1 again.
    const denied = await asSubmitter(['rollback', 'lm', '--alias', 'staging', '--json']);
    expect(denied.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
    expect(JSON.parse(denied.stdout as string).message).toMatch(/sam \(submitter\) may not rollback model/);
    const rollback = await asOperator(['rollback', 'lm', '--alias', 'staging', '--reason', 'bad outputs', '--json']);
    expect(rollback.exitCode, rollback.stderr as string).toBe(0);
    const rolledBack = JSON.parse(rollback.stdout as string);
    expect(rolledBack).toMatchObject({ rolled_back: true, from: 2, to: 1, by: 'olga' });
    finished.push(blocked.out.promotion_id, rolledBack.rollback_id);
    expect(await models().aliases('lm')).toEqual({ staging: 1 });
    // Nothing before version 1: a second rollback is refused.
    const nothing = await asOperator(['rollback', 'lm', '--alias', 'staging', '--json']);
    expect(nothing.exitCode).toBe(2);
    expect(JSON.parse(nothing.stdout as string)).toMatchObject({ error: PROMOTION_CODES.nothingToRollBack });

    const listed = await asOperator(['models', 'lm', '--json']);
    const report = JSON.parse(listed.stdout as string);
    expect(report.aliases).toEqual({ staging: 1 });
    expect(report.versions).toMatchObject([
      { version: 1, experiment_id: first, holdout_metric: 1.0, incumbent_version: null, requested_by: 'olga' },
      { version: 2, experiment_id: second, holdout_metric: 1.005, incumbent_version: 1, threshold: 0.01 },
    ]);
    expect(report.alias_history.at(-1)).toMatchObject({
      kind: 'rollback',
      version: 1,
      previous_version: 2,
      by: 'olga',
      reason: 'bad outputs',
    });
    expect(report.promotions.map((p: { status: string }) => p.status)).toEqual(['promoted', 'blocked', 'promoted']);
    expect(await models().versionsByExperiment(second)).toMatchObject([{ model: 'lm', version: 2 }]);
  });
});

describe('approval', () => {
  it('an approval that does not come in time rejects the promotion', async () => {
    const kept = await keptRun(1.0, 1.0);
    const timedOut = await promote([kept, '--model', 'lm-wait', '--approval', '--approval-timeout', '2s']);
    expect(timedOut.exitCode).toBe(3);
    expect(timedOut.out).toMatchObject({ status: 'rejected', code: PROMOTION_CODES.approvalTimeout, version: null });
    expect(await models().aliases('lm-wait')).toEqual({});
  });

  it('operators approve or reject, submitters may not; the audit trail names who', async () => {
    const kept = await keptRun(1.0, 1.0);
    const started = await asOperator(['promote', kept, '--model', 'lm-ok', '--approval', '--detach', '--json']);
    const { promotion_id: id } = JSON.parse(started.stdout as string) as { promotion_id: string };
    const handle = stack.client.workflow.getHandle(id);
    await waitFor(async () => (await handle.query(promotionStateQuery)).status === 'awaiting_approval', 120_000);

    const denied = await asSubmitter(['approve', id, '--json']);
    expect(denied.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
    expect(JSON.parse(denied.stdout as string).message).toMatch(/sam \(submitter\) may not approve promotion/);
    const approved = await asOperator(['approve', id, '--json']);
    expect(approved.exitCode, approved.stderr as string).toBe(0);
    expect(JSON.parse(approved.stdout as string)).toMatchObject({ decision: 'approve', decided_by: 'olga' });
    const result = (await handle.result()) as PromotionResult;
    expect(result).toMatchObject({ status: 'promoted', decided_by: 'olga', version: 1 });
    expect(await models().aliases('lm-ok')).toEqual({ staging: 1 });
    finished.push(id);
    const again = await asOperator(['approve', id]);
    expect(again.exitCode).toBe(1);

    const shown = await asOperator(['promotion', id, '--json']);
    const { record, audit } = JSON.parse(shown.stdout as string);
    expect(record).toMatchObject({ status: 'promoted', requested_by: 'olga', decided_by: 'olga' });
    expect(record.stages.map((s: { name: string; status: string }) => `${s.name}:${s.status}`)).toEqual([
      'integrity:passed',
      'evaluation:passed',
      'approval:passed',
      'alias:passed',
    ]);
    expect(audit).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ action: 'promote', actor: 'olga', allowed: true }),
        expect.objectContaining({ action: 'approve_promotion', actor: 'sam', allowed: false }),
        expect.objectContaining({ action: 'approve_promotion', actor: 'olga', allowed: true }),
      ]),
    );

    // A rejection ends it without moving the alias.
    const other = await keptRun(1.0, 0.9);
    const next = JSON.parse(
      (await asOperator(['promote', other, '--model', 'lm-ok', '--approval', '--detach', '--json'])).stdout as string,
    ).promotion_id as string;
    await waitFor(
      async () =>
        (await stack.client.workflow.getHandle(next).query(promotionStateQuery)).status === 'awaiting_approval',
      120_000,
    );
    const rejected = await asOperator(['reject', next, '--reason', 'not this week', '--json']);
    expect(rejected.exitCode, rejected.stderr as string).toBe(0);
    expect(await stack.client.workflow.getHandle(next).result()).toMatchObject({
      status: 'rejected',
      code: PROMOTION_CODES.rejected,
      reason: 'rejected by olga: not this week',
    });
    expect(await models().aliases('lm-ok')).toEqual({ staging: 1 });
  });

  it('a submitter may not promote', async () => {
    const kept = await keptRun(1.0, 1.0);
    const denied = await asSubmitter(['promote', kept, '--model', 'lm-sam', '--json']);
    expect(denied.exitCode).toBe(PERMISSION_DENIED_EXIT_CODE);
    expect(JSON.parse(denied.stdout as string)).toMatchObject({
      error: 'permission_denied',
      message: expect.stringMatching(/sam \(submitter\) may not promote: needs the operator or admin role/),
    });
    expect(await models().promotions('lm-sam')).toEqual([]);
  });
});

describe('integrity and cancellation', () => {
  it('a stored model whose bytes changed since its run is blocked before any evaluation', async () => {
    // A model of its own (no other run wrote these bytes): the one object is tampered with.
    const kept = await keptRun(1.25, 1.0);
    const [model] = (await catalog().get(kept))!.artifacts;
    const object = fileURLToPath(model!.uri!);
    await fs.writeFile(object, 'tampered weights\n');
    const blocked = await promote([kept, '--model', 'lm-tamper']);
    expect(blocked.exitCode).toBe(3);
    expect(blocked.out).toMatchObject({
      status: 'blocked',
      code: PROMOTION_CODES.integrityMismatch,
      holdout_experiment_id: null,
    });
    expect(blocked.out.reason).toMatch(
      /^model.txt: object [0-9a-f]{12}… in the store file:\/\/.* hashes to [0-9a-f]{12}…: refused$/,
    );
    expect((await models().promotion(blocked.out.promotion_id))?.stages).toMatchObject([
      { name: 'integrity', status: 'failed', code: PROMOTION_CODES.integrityMismatch },
    ]);

    // `expctl artifacts --get` refuses it too, and writes nothing.
    const out = path.join(stack.workDir, 'tampered-model.txt');
    const corrupt = await asOperator(['artifacts', kept, '--get', 'model.txt', '--out', out, '--json']);
    expect(corrupt.exitCode).toBe(4);
    expect(JSON.parse(corrupt.stdout as string)).toEqual({
      error: 'unavailable',
      message: expect.stringMatching(
        /^model.txt of exp-.*: object [0-9a-f]{12}… in the store .* hashes to .*: refused$/,
      ),
    });
    await expect(fs.access(out)).rejects.toThrow(/ENOENT/);

    // Gone from the store: blocked as missing.
    await fs.rm(object);
    const missing = await promote([kept, '--model', 'lm-tamper']);
    expect(missing.out).toMatchObject({ status: 'blocked', code: PROMOTION_CODES.artifactMissing });
    expect(missing.out.reason).toMatch(/^model.txt: object [0-9a-f]{12}… is not in the store file:\/\//);
    const gone = await asOperator(['artifacts', kept, '--get', 'model.txt', '--out', out]);
    expect(gone.exitCode).toBe(4);
    expect(gone.stderr).toMatch(/model.txt of exp-.*: object [0-9a-f]{12}… is not in the store/);
  });

  it('a canceled promotion is recorded as such and moves nothing', async () => {
    const kept = await keptRun(1.0, 1.0);
    const started = await asOperator(['promote', kept, '--model', 'lm-cancel', '--approval', '--detach', '--json']);
    const { promotion_id: id } = JSON.parse(started.stdout as string) as { promotion_id: string };
    const handle = stack.client.workflow.getHandle(id);
    await waitFor(async () => (await handle.query(promotionStateQuery)).status === 'awaiting_approval', 120_000);
    await handle.cancel();
    await waitFor(async () => (await models().promotion(id))?.code === PROMOTION_CODES.canceled, 60_000);
    expect(await models().promotion(id)).toMatchObject({ status: 'failed', endedAt: expect.any(String) });
    expect(await models().aliases('lm-cancel')).toEqual({});
  });
});

describe('a model whose training host is gone', () => {
  it('is checked in the fleet store, evaluated on another host and promoted; `expctl artifacts` fetches it', async () => {
    // Host A trains (the stack's own host is drained meanwhile), then goes for good: worker, disk and all.
    await drain(stack.client, 'promohost', true, 'the model trains on promo-a');
    try {
      const hostA = await stack.addGpuWorker({ host: 'promo-a', cpuSlots: 1 });
      const kept = await keptRun(1.5, 0.75);
      const record = (await catalog().get(kept))!;
      expect(record.worker).toBe('promo-a');
      const weights = 'weights for val_bpb 1.5\n';
      const sha256 = crypto.createHash('sha256').update(weights).digest('hex');
      expect(record.artifacts).toEqual([
        { path: 'model.txt', bytes: weights.length, sha256, uri: stack.store.objectUri(sha256) },
      ]);
      await hostA.shutdown();
      await drain(stack.client, 'promo-a', true, 'the host is gone');
      await fs.rm(path.join(stack.workDir, 'promo-a'), { recursive: true, force: true });
      await stack.addGpuWorker({ host: 'promo-b', cpuSlots: 1 });

      const promoted = await promote([kept, '--model', 'lm-gone']);
      expect(promoted.exitCode, promoted.stderr as string).toBe(0);
      expect(promoted.out).toMatchObject({
        status: 'promoted',
        code: PROMOTION_CODES.promoted,
        version: 1,
        candidate_metric: 0.75,
      });
      expect((await models().promotion(promoted.out.promotion_id))?.stages).toContainEqual(
        expect.objectContaining({ name: 'integrity', status: 'passed', note: `sha256 ${sha256} (fleet store)` }),
      );
      // The evaluation ran on host B, on the model fetched from the store into its own run directory.
      const holdout = (await catalog().get(promoted.out.holdout_experiment_id!))!;
      expect(holdout).toMatchObject({ status: 'completed', worker: 'promo-b' });
      expect(holdout.request.env).toMatchObject({ EXPCTL_MODEL_ARTIFACT: `expctl-store:${sha256}/model.txt` });
      expect(holdout.logTail).toContain('evaluating weights for val_bpb 1.5 on the holdout split');
      const fetched = path.join(stack.workDir, 'promo-b', 'runs', holdout.id, 'model', 'model.txt');
      expect(await fs.readFile(fetched, 'utf8')).toBe(weights);
      finished.push(promoted.out.promotion_id, holdout.id);

      // `expctl artifacts` lists the record and fetches the model from the store, verified.
      const listed = await asOperator(['artifacts', kept, '--json']);
      expect(listed.exitCode, listed.stderr as string).toBe(0);
      expect(outputOf('artifacts', listed)).toEqual({
        experiment_id: kept,
        artifacts: [{ path: 'model.txt', bytes: weights.length, sha256, uri: stack.store.objectUri(sha256) }],
      });
      const out = path.join(stack.workDir, 'fetched-model.txt');
      const got = await asOperator(['artifacts', kept, '--get', 'model.txt', '--out', out, '--json']);
      expect(got.exitCode, got.stderr as string).toBe(0);
      expect(outputOf('artifacts-get', got)).toMatchObject({ experiment_id: kept, path: 'model.txt', sha256, out });
      expect(await fs.readFile(out, 'utf8')).toBe(weights);

      // Bad input, each named.
      const unknown = await asOperator(['artifacts', 'exp-nothing-here', '--json']);
      expect(unknown.exitCode).toBe(2);
      expect(JSON.parse(unknown.stdout as string)).toMatchObject({
        message: expect.stringMatching(/^no experiment exp-nothing-here in /),
      });
      const noPath = await asOperator(['artifacts', kept, '--get', 'weights.bin', '--out', out, '--json']);
      expect(noPath.exitCode).toBe(2);
      expect(JSON.parse(noPath.stdout as string)).toMatchObject({
        message: `experiment ${kept} has no artifact "weights.bin" (it has model.txt)`,
      });
      const intoDir = await asOperator(['artifacts', kept, '--get', 'model.txt', '--out', stack.workDir]);
      expect(intoDir.exitCode).toBe(2);
      expect(intoDir.stderr).toContain(`--out ${stack.workDir} is a directory: name the file to write`);
      const half = await asOperator(['artifacts', kept, '--get', 'model.txt']);
      expect(half.exitCode).toBe(2);
      expect(half.stderr).toContain('--get PATH and --out FILE go together');
    } finally {
      await drain(stack.client, 'promohost', false, 'back');
    }
  });
});

describe('determinism', () => {
  it("promotion, evaluation and rollback histories replay against today's workflow code", async () => {
    expect(finished.length).toBeGreaterThanOrEqual(5);
    const histories = await Promise.all(
      finished.map(async (workflowId) => ({
        workflowId,
        history: await stack.client.workflow.getHandle(workflowId).fetchHistory(),
      })),
    );
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories(
      { workflowsPath: WORKFLOWS_PATH, replayName: 'promotion-replay', dataConverter: stack.dataConverter },
      histories,
    ))
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    expect(failures).toEqual([]);
  });
});
