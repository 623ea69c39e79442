import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import { parseExperimentRequest } from '../../src/domain/request.js';
import { runFiles } from '../../src/gpu-worker/run-files.js';
import { CONTROL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { experimentStateQuery, poolStateQuery } from '../../src/workflows/definitions.js';
import { experimentWorkflow } from '../../src/workflows/experiment.js';
import { EXPCTL, runCli, type ShownJson } from '../helpers/cli.js';
import { makeRepo } from '../helpers/repo.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { signAs } from '../../src/client/sign.js';
import { submitBatch } from '../../src/client/batches.js';
import { decodedHistory, rawHistory } from '../helpers/history.js';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import type { ExperimentRequest } from '../../src/domain/request.js';
import { payloadCodec } from '../../src/security/codec.js';
import { checkpoint } from '../helpers/records.js';
import { waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

// A secret given with --secret reaches the training process, and only it; no surface shows it.
// The worker runs as its own `expctl worker` process (as in production), so it can be restarted.
const HOST = 'vault';
/** Random, and of no well-known token shape: what keeps it out is scrubbing by value. */
const TOKEN = `tok-${crypto.randomBytes(12).toString('hex')}`;
const ENCODED = encodeURIComponent(TOKEN);

let stack: TestStack;
let source: { repo: string; commit: string };
let scratch: string;
/** The first run's ID (its history holds a sealed secret). */
let firstRun = '';
const workers = new Set<ResultPromise>();

const cliEnv = (extra: Record<string, string> = {}) => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
  ...extra,
});
const cli = (args: string[], extra: Record<string, string> = {}) =>
  runCli(cliEnv(extra), args, { cwd: source.repo, maxBuffer: 64 * 1024 * 1024 });
const runArgs = (tag: string, extra: string[]) => [
  'run',
  '--tag',
  tag,
  '--hypothesis',
  'a run that needs an API token',
  '--category',
  'other',
  '--time-budget',
  '60',
  ...extra,
  '--json',
  '--',
  'python3',
  'train.py',
];
const runDir = (id: string) => runFiles(path.join(stack.workDir, HOST), id);
/** `expctl worker` as its own process, registered with the pool before this returns. */
async function startWorker(): Promise<{ child: ResultPromise }> {
  const child = execa(
    process.execPath,
    [EXPCTL, 'worker', '--host', HOST, '--cpu-slots', '2', '--work-dir', path.join(stack.workDir, HOST)],
    { env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace }, reject: false },
  );
  workers.add(child);
  const pool = stack.client.workflow.getHandle(POOL_WORKFLOW_ID);
  const before = (await pool.query(poolStateQuery).catch(() => undefined))?.hosts[HOST]?.registeredAt ?? 0;
  try {
    await waitFor(async () => {
      const entry = (await pool.query(poolStateQuery).catch(() => undefined))?.hosts[HOST];
      return entry?.online === true && entry.registeredAt > before;
    }, 90_000);
  } catch (error) {
    child.kill('SIGKILL');
    const ended = await child;
    throw new Error(`the worker did not register: ${(error as Error).message}\n${ended.stdout}\n${ended.stderr}`);
  }
  return { child }; // wrapped: an execa subprocess is thenable
}

/** Every place a value could hide, as text: the answer must hold no trace of the token. */
function expectNoToken(what: string, text: string | Buffer): void {
  const haystack = Buffer.isBuffer(text) ? text : Buffer.from(text);
  for (const needle of [TOKEN, ENCODED, TOKEN.slice(4, 20), TOKEN.slice(-16)])
    expect(haystack.includes(needle), `${what} holds (part of) the secret`).toBe(false);
}

/** Every file under `dir`, recursively (files that vanish while it looks are skipped). */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  const nested = await Promise.all(
    entries.map(async (entry) => {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) return filesUnder(full);
      return entry.isFile() ? [full] : [];
    }),
  );
  return nested.flat();
}

/** The worker's disk holds no trace of the token: no file under its work directory (logs, run files, caches). */
async function expectNoTokenOnDisk(when: string): Promise<number> {
  const files = await filesUnder(path.join(stack.workDir, HOST));
  let read = 0;
  for (const file of files) {
    const bytes = await fs.readFile(file).catch(() => undefined);
    if (bytes === undefined) continue;
    read++;
    expectNoToken(`${when}: ${path.relative(stack.workDir, file)}`, bytes);
  }
  return read;
}

/** Pids whose environment holds `NAME=value` (how the drills find a run's processes, too). */
async function pidsWithVariable(name: string, value: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const environ = await fs.readFile(`/proc/${entry}/environ`, 'latin1').catch(() => '');
    if (`\0${environ}`.includes(`\0${name}=${value}\0`)) found.push(Number(entry));
  }
  return found;
}

beforeAll(async () => {
  stack = await startStack({ name: 'secrets', gpuWorker: false });
  source = await makeRepo({}, path.join(FIXTURES, 'scripts', 'secret_train.py'));
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-secrets-'));
  await startWorker();
}, 300_000);
afterAll(async () => {
  for (const child of workers) child.kill('SIGKILL');
  await Promise.allSettled([...workers]);
  await stack?.stop();
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
});

describe('--secret', () => {
  it('reaches the training process, and no surface shows it: show, logs, reports, the catalog file, progress', async () => {
    const go = path.join(scratch, 'go-main');
    const running = cli(runArgs('secrets', ['--secret', 'API_TOKEN', '--env', `WAIT_FOR=${go}`]), {
      API_TOKEN: TOKEN,
    });
    // Let it train (and heartbeat its progress lines, which print the token) before it finishes.
    let id = '';
    await waitFor(async () => {
      const runs = await fs.readdir(path.join(stack.workDir, HOST, 'runs')).catch(() => [] as string[]);
      id = runs.find((run) => /^exp-secrets-\d{8}-/.test(run)) ?? '';
      return id !== '' && (await fs.readFile(runDir(id).log, 'utf8').catch(() => '')).includes('step 00005');
    }, 60_000);
    // During the run: the script has printed the token (in one write and in two), and trains on.
    const rawDuring = await fs.readFile(runDir(id).log, 'utf8');
    expect(rawDuring).toContain('using API_TOKEN=[redacted]');
    expect(rawDuring).toContain('split token [redacted] end');
    expect(await expectNoTokenOnDisk('during the run')).toBeGreaterThan(5);
    await fs.writeFile(go, '');
    const run = await running;
    expectNoToken('expctl run stdout', run.stdout as string);
    expectNoToken('expctl run stderr (progress lines)', run.stderr as string);
    const result = JSON.parse(run.stdout as string) as ExperimentResult;
    expect(result).toMatchObject({ experiment_id: id, status: 'completed', decision: 'keep', metric: 1 });

    // The script got the right value: the record keeps the sha256 of the file holding its sha256.
    const shown = await cli(['show', id, '--json']);
    expect(shown.exitCode).toBe(0);
    expectNoToken('show --json', shown.stdout as string);
    const { record: shownRecord, ...snapshot } = JSON.parse(shown.stdout as string) as ShownJson;
    const record = shownRecord!;
    const tokenHash = crypto.createHash('sha256').update(TOKEN).digest('hex');
    expect(record.artifacts).toContainEqual(
      expect.objectContaining({
        path: 'token.sha256',
        sha256: crypto.createHash('sha256').update(tokenHash).digest('hex'),
      }),
    );
    expect(snapshot.request?.secrets).toEqual({ API_TOKEN: '[secret]' });
    // Sealed for the workers, the value reaches no process that could digest it: the record keeps the name.
    expect(record.request.secrets).toEqual({ API_TOKEN: '[secret]' });
    expect(record.environment?.variables.API_TOKEN).toBe('[secret]');
    expect(record.metrics).toMatchObject({
      val_bpb: 1,
      api_token: '[redacted]',
      note: 'sent with [redacted] attached',
    });
    expect(snapshot.training?.metrics).toMatchObject({ api_token: '[redacted]' });
    expect(record.log_tail).toContain('using API_TOKEN=[redacted]');
    expect(record.log_tail).toContain('the token is [redacted]; url-encoded [redacted]');

    // `show` as a person sees it (on a terminal).
    const human = await execa(
      process.execPath,
      ['--import', 'data:text/javascript,process.stdout.isTTY=true', EXPCTL, 'show', id],
      { env: cliEnv(), reject: false },
    );
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain('secrets:    API_TOKEN (values are not kept)');
    expect(human.stdout).toContain('metrics:    val_bpb=1 api_token=[redacted]');
    expectNoToken('show', human.stdout as string);

    // `expctl logs` reads the raw log through the host, scrubbed; the raw log itself is as the script wrote it.
    const logs = await cli(['logs', id]);
    expect(logs.exitCode).toBe(0);
    expect(logs.stdout).toContain('using API_TOKEN=[redacted]');
    expect(logs.stdout).toContain('api_token:        [redacted]');
    expectNoToken('expctl logs', logs.stdout as string);
    // The raw log was scrubbed as the supervisor wrote it, the token split across two writes included.
    const raw = await fs.readFile(runDir(id).log, 'utf8');
    expect(raw).toContain('split token [redacted] end');
    expect(raw).toContain('api_token:        [redacted]');

    const tsv = await cli(['report', 'tsv', '--tag', 'secrets', '--columns', 'default,api_token,note']);
    expect(tsv.exitCode).toBe(0);
    expect(tsv.stdout).toContain('[redacted]');
    expectNoToken('report tsv', tsv.stdout as string);
    const html = path.join(scratch, 'report.html');
    expect((await cli(['report', 'html', '--tag', 'secrets', '--out', html])).exitCode).toBe(0);
    expectNoToken('report html', await fs.readFile(html));

    // The catalog file itself, write-ahead log included; the workflow's memo.
    checkpoint(stack.catalogPath);
    for (const file of [stack.catalogPath, `${stack.catalogPath}-wal`])
      expectNoToken(file, await fs.readFile(file).catch(() => Buffer.alloc(0)));
    // Temporal history as the server stores it (payloads encrypted; failures and notes scrubbed).
    const history = await rawHistory(stack.client, stack.namespace, id);
    expectNoToken('the raw workflow history', history.bytes);
    // History as the payload keyring's holder reads it (every submitter has the keyring): every
    // payload of every event decoded. The secret travels sealed for the GPU workers: the start input
    // and the host steps' inputs (validation, training) carry its sealed form, which the keyring does not open.
    const decoded = await decodedHistory(history.events, await payloadCodec());
    expect(decoded.length).toBeGreaterThan(20);
    expect(decoded.filter((payload) => payload.includes('expctl-sealed:v1:')).length).toBeGreaterThanOrEqual(3);
    decoded.forEach((payload, i) => expectNoToken(`payload ${i} of the history, decoded with the keyring`, payload));
    firstRun = id;
    const described = await stack.client.workflow.getHandle(id).describe();
    expectNoToken('memo and search attributes', JSON.stringify([described.memo, described.typedSearchAttributes]));

    // On the host, after the run: no file under the worker's directory holds it (record, outcome, log...).
    expect(await fileExists(runDir(id).outcome)).toBe(true);
    expect(await expectNoTokenOnDisk('after the run')).toBeGreaterThan(5);
  });

  it('opens only in the run it was sealed for: copied into another run it is refused; sent unsealed, it is refused before placement', async () => {
    // The first run's start input, as the keyring's holder reads it: the request with the sealed value.
    const { events } = await rawHistory(stack.client, stack.namespace, firstRun);
    const [startPayload] = await (
      await payloadCodec()
    ).decode([events[0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]! as Payload]);
    const { request: stolen } = defaultPayloadConverter.fromPayload<{ request: ExperimentRequest }>(startPayload!);
    expect(stolen.secrets.API_TOKEN).toMatch(/^expctl-sealed:v1:/);

    const start = async (experimentId: string, request: ExperimentRequest) => {
      const handle = await stack.client.workflow.start(experimentWorkflow, {
        workflowId: experimentId,
        taskQueue: CONTROL_TASK_QUEUE,
        args: [
          {
            experimentId,
            request,
            submittedAt: new Date().toISOString(),
            priority: 0,
            authorization: signAs('submit', experimentId, { experimentId, request, priority: 0 }),
          },
        ],
      });
      return handle.result();
    };
    // Replayed into a run of one's own: the worker refuses to open it, and no training starts.
    const replayId = `exp-secrets-replay-${crypto.randomBytes(3).toString('hex')}`;
    const replayed = await start(replayId, { ...stolen, idempotencyKey: undefined });
    expect(replayed).toMatchObject({ status: 'validation_failed' });
    expect(replayed.reason).toContain(`API_TOKEN (--secret): the sealed value does not open for ${replayId}`);
    expect(await fs.readFile(runDir(replayId).log, 'utf8').catch(() => '')).not.toContain('using API_TOKEN');
    expect(await pidsWithVariable('EXPCTL_EXPERIMENT_ID', replayId)).toEqual([]);

    // A client that does not seal (plaintext in history) is refused before any host is asked.
    const plainId = `exp-secrets-plain-${crypto.randomBytes(3).toString('hex')}`;
    const plain = await start(plainId, {
      ...stolen,
      secrets: { API_TOKEN: `plain-${crypto.randomBytes(8).toString('hex')}` },
    });
    expect(plain).toMatchObject({ status: 'validation_failed' });
    expect(plain.reason).toMatch(/^API_TOKEN \(--secret\) arrived unsealed: the payload keyring would open it/);
    expect(await fileExists(runDir(plainId).dir)).toBe(false);
  });

  it('reaches every variant of a batch, each sealed for its own experiment', async () => {
    const git = (...args: string[]) => execa('git', ['-C', source.repo, ...args]);
    const variants: string[] = [];
    for (const subject of ['variant a', 'variant b']) {
      await git('checkout', '-q', '--detach', source.commit);
      await git('commit', '-q', '--allow-empty', '-m', subject);
      variants.push((await git('rev-parse', 'HEAD')).stdout.trim());
    }
    await git('checkout', '-q', 'main');
    const { batchId, handle, members } = await submitBatch(stack.client, {
      template: {
        tag: 'secrets-batch',
        category: 'other',
        command: ['python3', 'train.py'],
        repo: source.repo,
        timeBudgetSeconds: 60,
        secrets: { API_TOKEN: TOKEN },
      },
      base: source.commit,
      variants: variants.map((commit, i) => ({ commit, hypothesis: `variant ${i}` })),
    });
    const result = await handle.result();
    expect(result.children.map((child) => child.status)).toEqual(['completed', 'completed']);
    const tokenHash = crypto.createHash('sha256').update(TOKEN).digest('hex');
    for (const id of members) {
      const record = (JSON.parse((await cli(['show', id, '--json'])).stdout as string) as ShownJson).record!;
      expect(record.artifacts).toContainEqual(
        expect.objectContaining({
          path: 'token.sha256',
          sha256: crypto.createHash('sha256').update(tokenHash).digest('hex'),
        }),
      );
    }
    // The batch's history and its members' hold the secret only sealed, each for its own member.
    const codec = await payloadCodec();
    for (const id of [batchId, ...members]) {
      const decoded = await decodedHistory((await rawHistory(stack.client, stack.namespace, id)).events, codec);
      expect(decoded.some((payload) => payload.includes('expctl-sealed:v1:'))).toBe(true);
      decoded.forEach((payload, i) => expectNoToken(`${id}: payload ${i}, decoded with the keyring`, payload));
    }
  });

  it('is refused, naming the variable, when the submitter does not have it', async () => {
    const refused = await cli(runArgs('secrets', ['--secret', 'MISSING_TOKEN']));
    expect(refused.exitCode).toBe(2);
    expect(JSON.parse(refused.stdout as string)).toMatchObject({
      experiment_id: null,
      status: 'validation_failed',
      reason: expect.stringContaining(
        '--secret MISSING_TOKEN: the variable MISSING_TOKEN is not set in this environment; export it, or pass --secret MISSING_TOKEN=@FILE',
      ),
    });
    // A value also written elsewhere in the request would travel there as written: refused, naming where.
    const exposed = await cli(runArgs('secrets', ['--secret', 'API_TOKEN', '--env', `COPY=${TOKEN}`]), {
      API_TOKEN: TOKEN,
    });
    expect(exposed.exitCode).toBe(2);
    expect(JSON.parse(exposed.stdout as string)).toMatchObject({
      experiment_id: null,
      status: 'validation_failed',
      reason: expect.stringContaining('a value given with --secret is also written in --env COPY'),
    });
    expectNoToken('the refusal', `${exposed.stdout as string}${exposed.stderr as string}`);

    // A submitter without the workers' public key cannot seal: refused before anything starts, saying where to get it.
    const unsealable = await cli(runArgs('secrets', ['--secret', 'API_TOKEN']), {
      API_TOKEN: TOKEN,
      EXPCTL_SEAL_PUBLIC_KEY_FILE: path.join(scratch, 'absent', 'worker-seal.pub'),
    });
    expect(unsealable.exitCode).toBe(6);
    expect(`${unsealable.stdout as string}${unsealable.stderr as string}`).toMatch(
      /no worker sealing key at .*absent\/worker-seal\.pub: --secret values are sealed for the fleet's GPU workers/,
    );
  });

  it('survives a worker restart: the adopting worker says it cannot scrub by value; the supervisor still does, and nothing reaches the disk', async () => {
    const go = path.join(scratch, 'go-restart');
    const detached = await cli(
      runArgs('secrets-restart', ['--secret', 'API_TOKEN', '--env', `WAIT_FOR=${go}`, '--detach']),
      { API_TOKEN: TOKEN },
    );
    const { experiment_id: id } = JSON.parse(detached.stdout as string) as { experiment_id: string };
    await waitFor(
      async () => (await fs.readFile(runDir(id).log, 'utf8').catch(() => '')).includes('step 00003'),
      60_000,
    );
    const [worker] = [...workers];
    worker!.kill('SIGKILL');
    await worker;
    workers.delete(worker!);
    await startWorker();
    await fs.writeFile(go, '');
    const result = await stack.client.workflow.getHandle<typeof experimentWorkflow>(id).result();
    expect(result).toMatchObject({ status: 'completed', metric: 1 });
    const shown = await cli(['show', id, '--json']);
    expectNoToken('show --json after a restart', shown.stdout as string);
    const record = (JSON.parse(shown.stdout as string) as ShownJson).record!;
    expect(record.attempts).toBe(1);
    expect(record.metrics).toMatchObject({ api_token: '[redacted]' });
    expect(record.log_tail).toContain('| [redacted]');
    const logs = await cli(['logs', id]);
    expect(logs.stdout).toContain('a restarted worker re-attached');
    expect(logs.stdout).toContain('this worker adopted the run without its secret values');
    expect(logs.stdout).toContain('using API_TOKEN=[redacted]');
    expect(logs.stdout).toContain('split token [redacted] end');
    expectNoToken('expctl logs after a restart', logs.stdout as string);
    expect(await expectNoTokenOnDisk('after an adopted run')).toBeGreaterThan(5);
  });
});

describe('loader and interpreter hijack variables', () => {
  it('are refused with the specific error before anything runs, by the CLI and by the workflow itself', async () => {
    const refused = await cli(runArgs('hijack', ['--env', 'LD_PRELOAD=x']));
    expect(refused.exitCode).toBe(2);
    expect(JSON.parse(refused.stdout as string)).toMatchObject({
      experiment_id: null,
      status: 'validation_failed',
      reason: expect.stringMatching(
        /LD_PRELOAD refused \(--env\/--secret\): .*LD_PRELOAD makes the dynamic loader load or audit other libraries.*expctl tag create hijack --allow-env LD_PRELOAD/,
      ),
    });

    // A client that skips the CLI's check meets the experiment's own, before placement: no lease, no run directory.
    const experimentId = `exp-hijack-direct-${crypto.randomBytes(3).toString('hex')}`;
    const request = parseExperimentRequest({
      tag: 'hijack',
      hypothesis: 'h',
      category: 'other',
      command: ['python3', 'train.py'],
      repo: source.repo,
      commit: source.commit,
      env: { NODE_OPTIONS: '--require /tmp/x.js' },
    });
    const handle = await stack.client.workflow.start(experimentWorkflow, {
      workflowId: experimentId,
      taskQueue: CONTROL_TASK_QUEUE,
      args: [
        {
          experimentId,
          request,
          submittedAt: new Date().toISOString(),
          priority: 0,
          // Signed as the client API signs: the check under test is the workflow's, not authorization.
          authorization: signAs('submit', experimentId, { experimentId, request, priority: 0 }),
        },
      ],
    });
    const result = await handle.result();
    expect(result.status).toBe('validation_failed');
    expect(result.reason).toMatch(/NODE_OPTIONS refused .*--allow-env NODE_OPTIONS/);
    const snapshot = await handle.query(experimentStateQuery);
    expect(snapshot.gpu).toBeNull();
    expect(snapshot.timeline.map((t) => t.status)).not.toContain('queued');
    expect(await fileExists(runDir(experimentId).dir)).toBe(false);
  });

  it("are allowed by the tag's policy, and reach the training process only, never its supervisor", async () => {
    const policy = await cli(['tag', 'create', 'hijack', '--allow-env', 'LD_PRELOAD', '--json']);
    expect(policy.exitCode).toBe(0);
    expect(JSON.parse(policy.stdout as string).policy.allow_env).toEqual(['LD_PRELOAD']);
    const go = path.join(scratch, 'go-hijack');
    const pidFile = path.join(scratch, 'hijack-training.pid');
    const marker = `only-for-training-${crypto.randomBytes(4).toString('hex')}`;
    const detached = await cli(
      runArgs('hijack', [
        '--env',
        'LD_PRELOAD=libexpctl-test-absent.so',
        '--env',
        `TRAINING_ONLY=${marker}`,
        '--env',
        `WAIT_FOR=${go}`,
        '--env',
        `PID_FILE=${pidFile}`,
        '--secret',
        'API_TOKEN',
        '--detach',
      ]),
      { API_TOKEN: TOKEN },
    );
    expect(detached.exitCode).toBe(0);
    const { experiment_id: id } = JSON.parse(detached.stdout as string) as { experiment_id: string };
    // The script has started (it writes its pid once it has its token) and waits for `go`.
    await waitFor(async () => (await fileExists(runDir(id).pidFile)) && (await fileExists(pidFile)), 60_000);
    const supervisorPid = Number(await fs.readFile(runDir(id).pidFile, 'utf8'));
    const supervisorEnv = await fs.readFile(`/proc/${supervisorPid}/environ`, 'latin1');
    expect(supervisorEnv).toContain(`\0EXPCTL_EXPERIMENT_ID=${id}\0`);
    for (const name of ['LD_PRELOAD', 'TRAINING_ONLY', 'WAIT_FOR', 'API_TOKEN'])
      expect(`\0${supervisorEnv}`).not.toContain(`\0${name}=`);
    expectNoToken('the supervisor environment', supervisorEnv);
    expectNoToken('the supervisor argv', await fs.readFile(`/proc/${supervisorPid}/cmdline`));
    // The training process has them all.
    const training = await pidsWithVariable('TRAINING_ONLY', marker);
    expect(training).not.toContain(supervisorPid);
    expect(training.length).toBeGreaterThan(0);
    const trainingEnv = await fs.readFile(`/proc/${training.at(-1)}/environ`, 'latin1');
    expect(trainingEnv).toContain('\0LD_PRELOAD=libexpctl-test-absent.so\0');
    expect(trainingEnv).toContain(`\0API_TOKEN=${TOKEN}\0`);
    // The worker's own keys stay with the worker (the supervisor has them; the training code does not).
    expect(supervisorEnv).toContain('\0EXPCTL_KEY_FILE=');
    expect(supervisorEnv).toContain('\0EXPCTL_CREDENTIAL_FILE=');
    for (const name of ['EXPCTL_KEY_FILE', 'EXPCTL_CREDENTIAL_FILE', 'EXPCTL_ISSUER_PUBLIC_KEY_FILE'])
      expect(`\0${trainingEnv}`).not.toContain(`\0${name}=`);

    await fs.writeFile(go, '');
    const result = await stack.client.workflow.getHandle<typeof experimentWorkflow>(id).result();
    expect(result.status).toBe('completed');
  });
});
