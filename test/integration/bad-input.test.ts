import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitVariant } from '../../src/client/source.js';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import { MAX_BATCH_VARIANTS, MAX_CONFIG_BYTES } from '../../src/domain/bounds.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { poolStateQuery } from '../../src/workflows/definitions.js';
import { RESULT_KEYS, runCli } from '../helpers/cli.js';
import { commitAll, commitsSharingPrefix, makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';

// The bad-input corpus: every malformed input to run, batch, data add, tag create, show, wait, logs
// and cancel, as the CLI is run (a process, against a real server). Each exits 2 with a message that
// names the field and the problem: no stack trace, no exit 1, no Temporal error text. Refusals
// before submission leave nothing behind: no record, no workflow, no lease. Pure rules: test/unit/bad-input.test.ts.
const HOST = 'corpushost';
const TAG = 'corpus';
let stack: TestStack;
let source: { repo: string; commit: string };
let scratch: string;

const cliEnv = () => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
});
const cli = (args: string[], cwd = source.repo) => runCli(cliEnv(), args, { cwd });
const runArgs = (extra: string[], command = ['python3', 'train.py'], tag = TAG) => [
  'run',
  '--tag',
  tag,
  ...(extra.includes('--hypothesis') ? [] : ['--hypothesis', 'an agent tries something']),
  '--category',
  'hyperparams',
  ...(extra.includes('--time-budget') ? [] : ['--time-budget', '30']),
  ...extra,
  '--json',
  '--',
  ...command,
];

/** What no refusal may show: a stack trace, Temporal's or gRPC's own error text. */
function expectNoRawError(name: string, output: string): void {
  expect(output, name).not.toMatch(/\n\s+at .+[(:]\d+/);
  expect(output, name).not.toMatch(
    /did not register a handler|WorkflowNotFoundError|WorkflowExecution|grpc|Command failed|Invalid key in record/i,
  );
}

/** Runs cases four processes at a time (each is a node start on a shared machine). */
async function inFours<T>(cases: T[], check: (c: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < cases.length; i += 4) await Promise.all(cases.slice(i, i + 4).map(check));
}

/** The commit the variant is a child of (HEAD moves on in a later test). */
let base: string;
let ambiguousPrefix: string;
let dirtyRepo: string;
let variant: string;

beforeAll(async () => {
  stack = await startStack({ name: 'corpus', host: HOST, cpuSlots: 2 });
  source = await makeRepo();
  base = source.commit;
  scratch = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-corpus-'));
  ambiguousPrefix = (await commitsSharingPrefix(source.repo))[0].slice(0, 4);
  variant = await commitVariant(source.repo, source.commit, 'note.txt', 'a variant\n', 'a variant', {
    name: 'test',
    email: 'test@example.com',
  });
  dirtyRepo = (await makeRepo({ 'README.md': 'readme\n' })).repo;
  await fs.writeFile(path.join(dirtyRepo, 'train.py'), '# changed\n');
  await fs.writeFile(path.join(dirtyRepo, 'README.md'), 'changed\n');
  await fs.writeFile(path.join(scratch, 'nul.secret'), 'abcdefgh\0ijklmnop\n');
  await fs.writeFile(path.join(scratch, 'shard.jsonl'), '{"x":1}\n');
});
afterAll(async () => {
  await stack?.stop();
  if (scratch) await fs.rm(scratch, { recursive: true, force: true });
});

describe('refused before anything is submitted (exit 2), each with its own message', () => {
  const run: [string, string[], RegExp, string[]?, string?][] = [
    ['--priority abc', ['--priority', 'abc'], /--priority "abc": expected an integer/],
    ['--time-budget 0x10', ['--time-budget', '0x10'], /--time-budget "0x10": expected a decimal number/],
    ['--gpu-mem 1e3', ['--gpu-mem', '1e3'], /--gpu-mem "1e3": expected an integer/],
    ['--timeout ""', ['--timeout', ''], /--timeout "": expected a decimal number/],
    ['--max-replacements 1.5', ['--max-replacements', '1.5'], /--max-replacements "1.5": expected an integer/],
    ['--tag twice', ['--tag', 'other'], /--tag was given 2 times/],
    ['--env NOEQUALS', ['--env', 'NOEQUALS'], /--env expects KEY=VALUE/],
    ['--metric with a space', ['--metric', 'val bpb'], /--metric "val bpb": expected a metric name/],
    ['--dataset ../../etc/passwd', ['--dataset', '../../etc/passwd'], /--dataset: .*must not contain "\.\."/],
    ['--checkpoint /etc/shadow', ['--checkpoint', '/etc/shadow'], /--checkpoint: .*not an absolute path/],
    ['--checkpoint store:a/b', ['--checkpoint', 'store:a/b'], /--checkpoint: "store:a\/b" must be store:EXPERIMENT_ID/],
    ['--grace', ['--grace', '30'], /--grace is gone/],
    ['--setup with a shell operator', ['--setup', 'uv sync && make'], /--setup .*without a shell/],
    ['an unknown flag', ['--bogus'], /unknown option '--bogus'/],
    [
      '--timeout below the budget',
      ['--timeout', '10'],
      /--timeout: the kill limit \(--timeout\) must be at least the training budget/,
    ],
    ['--env "BAD NAME=1"', ['--env', 'BAD NAME=1'], /--env "BAD NAME": the name must be an environment variable name/],
    [
      '--dataset NAME@-1',
      ['--dataset', 'climbmix@-1'],
      /--dataset: "climbmix@-1": a dataset version is NAME@latest or NAME@V/,
    ],
    ['--dataset ghost@0', ['--dataset', 'ghost@0'], /--dataset: "ghost@0": a dataset version is NAME@latest or NAME@V/],
    ['--secret from a file holding a NUL byte', [], /--secret TOKEN: must not contain a NUL byte/],
    [
      '--env value over its bound',
      ['--env', `BIG=${'x'.repeat(40 * 1024)}`],
      /--env BIG: the value is 40\.0 KiB; a value has at most 32\.0 KiB/,
    ],
    ['--hypothesis over its bound', ['--hypothesis', 'h'.repeat(2001)], /--hypothesis: at most 2000 characters/],
    [
      'a command line over its bound',
      [],
      /the command after --: 70\.0 KiB long; at most 64\.0 KiB/,
      ['python3', 'train.py', 'x'.repeat(70 * 1024 - 'python3 train.py '.length)],
    ],
    [
      '--repo with a scheme workers do not fetch',
      ['--repo', 'ftp://example.com/r.git', '--commit', 'a'.repeat(40)],
      /--repo: the URL scheme ftp is not one workers fetch/,
    ],
    [
      '--repo with a transport helper',
      ['--repo', 'ext::evil', '--commit', 'a'.repeat(40)],
      /not inside a git repository|--repo: git's transport helpers/,
    ],
    ['--commit naming an option', ['--commit', '--output=x'], /--commit "--output=x": expected a commit SHA/],
    ['--commit missing', ['--commit', 'f'.repeat(12)], /commit f{12} does not exist in /],
  ];
  it('run: every malformed flag, the message naming the flag and the rule', async () => {
    const secretFile = path.join(scratch, 'nul.secret');
    await inFours(run, async ([name, extra, message, command]) => {
      const args = name.startsWith('--secret') ? ['--secret', `TOKEN=@${secretFile}`] : extra;
      const child = await cli(runArgs(args, command));
      expect(child.exitCode, `${name}: ${child.stderr}`).toBe(2);
      const result = JSON.parse(child.stdout as string) as ExperimentResult;
      expect(Object.keys(result)).toEqual(expect.arrayContaining([...RESULT_KEYS]));
      expect(result, name).toMatchObject({
        experiment_id: null,
        status: 'validation_failed',
        decision: null,
        action: null,
        consecutive_crashes: 0,
        should_abort: false,
      });
      expect(result.reason, name).toMatch(message);
      expect(result.reason, name).not.toContain('abcdefgh');
      expectNoRawError(name, `${child.stdout}\n${child.stderr}`);
    });
  }, 300_000);

  it('run: an ambiguous commit prefix is called ambiguous; a dirty tree names every path whole', async () => {
    const ambiguous = await cli(runArgs(['--commit', ambiguousPrefix]));
    expect(ambiguous.exitCode).toBe(2);
    expect(JSON.parse(ambiguous.stdout as string).reason).toMatch(
      new RegExp(
        `^commit ${ambiguousPrefix} is ambiguous in .*: more than one object starts with it; give more characters`,
      ),
    );
    const dirty = await cli(runArgs([]), dirtyRepo);
    expect(dirty.exitCode).toBe(2);
    expect(JSON.parse(dirty.stdout as string).reason).toMatch(
      /^uncommitted changes in .* \(README\.md, train\.py\); commit them/,
    );
  }, 120_000);

  const batch: [string, string[], RegExp][] = [
    [
      'more variants than a batch holds',
      Array.from({ length: MAX_BATCH_VARIANTS + 1 }, (_, i) => `c${i}`),
      new RegExp(`a batch holds at most ${MAX_BATCH_VARIANTS} commits, not ${MAX_BATCH_VARIANTS + 1}`),
    ],
    ['--env "BAD NAME=1"', ['--env', 'BAD NAME=1', 'VARIANT'], /--env "BAD NAME": the name must be/],
    ['--dataset ghost@0', ['--dataset', 'ghost@0', 'VARIANT'], /--dataset: "ghost@0": a dataset version/],
    [
      'a variant that is not a child of the base',
      ['VARIANT', 'BASE'],
      /commit [0-9a-f]{40} is not a child of the base/,
    ],
    ['--deadline 5s', ['--deadline', '5s', 'VARIANT'], /--deadline "5s": expected a decimal number/],
  ];
  it('batch: every malformed input, before any variant is submitted', async () => {
    await inFours(batch, async ([name, args, message]) => {
      const child = await cli([
        'batch',
        '--tag',
        TAG,
        '--category',
        'hyperparams',
        '--json',
        '--base',
        base,
        ...args.map((arg) => (arg === 'VARIANT' ? variant : arg === 'BASE' ? base : arg)),
        '--',
        'python3',
        'train.py',
      ]);
      expect(child.exitCode, `${name}: ${child.stderr}`).toBe(2);
      const refusal = JSON.parse(child.stdout as string) as { batch_id: null; status: string; reason: string };
      expect(refusal, name).toMatchObject({ batch_id: null, status: 'validation_failed' });
      expect(refusal.reason, name).toMatch(message);
      expectNoRawError(name, `${child.stdout}\n${child.stderr}`);
    });
  }, 300_000);

  /** Commands that print their refusal on stderr: `expctl: MESSAGE`, exit 2. */
  const stderrCases = (): [string, string[], RegExp][] => {
    const shard = path.join(scratch, 'shard.jsonl');
    const id10k = `exp-${'x'.repeat(10_000)}`;
    return [
      ['data add: a dataset name with ..', ['data', 'add', '../x', shard], /dataset "\.\.\/x" must be/],
      [
        'data add: 10^20 shards',
        ['data', 'add', 'ds', shard, '--shard', '0/99999999999999999999'],
        /--shard "0\/99999999999999999999": a version holds at most 100000 shards/,
      ],
      [
        'data add: 100001 shards',
        ['data', 'add', 'ds', shard, '--shard', '0/100001'],
        /a version holds at most 100000 shards, not 100001/,
      ],
      [
        'data add: an index out of its count',
        ['data', 'add', 'ds', shard, '--shard', '5/3'],
        /--shard "5\/3": the shard index must be a whole number from 0 to 2/,
      ],
      [
        'data add: a malformed --shard',
        ['data', 'add', 'ds', shard, '--shard', 'a/b'],
        /--shard "a\/b": expected i\/N/,
      ],
      [
        'data add: a malformed --sha256',
        ['data', 'add', 'ds', shard, '--sha256', 'xyz'],
        /--sha256 "xyz": expected 64 hex digits/,
      ],
      ['data add: --records -1', ['data', 'add', 'ds', shard, '--records', '-1'], /--records "-1": must be at least 0/],
      ['data add: --version 0', ['data', 'add', 'ds', shard, '--version', '0'], /--version "0": must be at least 1/],
      ['data add: --lateness 5 parsecs', ['data', 'add', 'ds', shard, '--lateness', '5pc'], /--lateness/],
      [
        'data add: a missing file',
        ['data', 'add', 'ds', path.join(scratch, 'absent.jsonl')],
        /absent\.jsonl is not a readable file/,
      ],
      ['tag create: a bad name', ['tag', 'create', 'bad name!'], /<tag> "bad name!": a tag is/],
      [
        'tag create: --near-miss NaN',
        ['tag', 'create', TAG, '--near-miss', 'NaN'],
        /--near-miss "NaN": expected a decimal number/,
      ],
      [
        'tag create: --near-miss -1',
        ['tag', 'create', TAG, '--near-miss', '-1'],
        /--near-miss "-1": must be at least 0/,
      ],
      [
        'tag create: --max-crashes huge',
        ['tag', 'create', TAG, '--max-crashes', '99999999999999999999'],
        /--max-crashes "99999999999999999999": out of range/,
      ],
      [
        'tag create: --max-crashes 0',
        ['tag', 'create', TAG, '--max-crashes', '0'],
        /--max-crashes "0": must be at least 1/,
      ],
      [
        'tag create: code as a guard',
        ['tag', 'create', TAG, '--guard', "require('child_process').execSync('id')"],
        /--guard: guard ".*" must be METRIC OP VALUE/,
      ],
      [
        'tag create: a 10 KB guard',
        ['tag', 'create', TAG, '--guard', `x==${'a'.repeat(10_000)}`],
        /--guard: a guard of 10003 characters; a guard has at most 200/,
      ],
      [
        'tag create: --metric with a space',
        ['tag', 'create', TAG, '--metric', 'val bpb'],
        /--metric "val bpb": expected a metric name/,
      ],
      ['tag create: an unknown flag', ['tag', 'create', TAG, '--bogus'], /unknown option '--bogus'/],
      ['show ../../x', ['show', '../../x'], /no such experiment "\.\.\/\.\.\/x": IDs are ASCII letters/],
      [
        'show a 10 KB ID',
        ['show', id10k],
        /no such experiment \(an ID of 10004 characters\): the ID has 10004 characters; IDs have at most 255/,
      ],
      ['show a unicode ID', ['show', 'exp-ünïcödé'], /no such experiment "exp-ünïcödé": IDs are ASCII/],
      ['show an ANSI ID', ['show', 'exp-\u001b[31mred'], /no such experiment "exp-\\\\x1b\[31mred": IDs are ASCII/],
      [
        'show an unknown ID',
        ['show', 'exp-corpus-20261206-000000-abcdef'],
        /no such experiment "exp-corpus-20261206-000000-abcdef"/,
      ],
      [
        'show the pool',
        ['show', POOL_WORKFLOW_ID],
        /"expctl-pool" is not an experiment; it is the fleet's pool: see `expctl pool`/,
      ],
      [
        'show an unknown batch',
        ['show', 'batch-corpus-k0000000000000000'],
        /no such batch "batch-corpus-k0000000000000000"/,
      ],
      ['wait an unknown ID', ['wait', 'exp-corpus-nope'], /no such experiment "exp-corpus-nope"/],
      ['wait an unknown batch', ['wait', 'batch-corpus-nope'], /no such batch "batch-corpus-nope"/],
      ['wait ../../x', ['wait', '../../x'], /no such experiment "\.\.\/\.\.\/x"/],
      ['logs ../../x', ['logs', '../../x'], /no such experiment "\.\.\/\.\.\/x"/],
      ['logs a 10 KB ID', ['logs', id10k], /no such experiment \(an ID of 10004 characters\)/],
      ['logs an unknown ID', ['logs', 'exp-corpus-nope'], /no such experiment "exp-corpus-nope"/],
      ['logs the pool', ['logs', POOL_WORKFLOW_ID], /"expctl-pool" is not an experiment; it is the fleet's pool/],
      ['cancel ../../x', ['cancel', '../../x'], /no such experiment "\.\.\/\.\.\/x"/],
      ['cancel a unicode ID', ['cancel', 'exp-ünï'], /no such experiment "exp-ünï"/],
      ['cancel an unknown ID', ['cancel', 'exp-corpus-nope'], /no such experiment "exp-corpus-nope"/],
      ['cancel the pool', ['cancel', POOL_WORKFLOW_ID], /"expctl-pool" is not an experiment; it is the fleet's pool/],
    ];
  };
  it('data add, tag create, show, wait, logs and cancel: exit 2 with the field and the problem', async () => {
    await inFours(stderrCases(), async ([name, args, message]) => {
      const child = await cli(args);
      expect(child.exitCode, `${name}: ${child.stderr}`).toBe(2);
      expect(child.stderr, name).toMatch(message);
      expectNoRawError(name, `${child.stdout}\n${child.stderr}`);
    });
  }, 600_000);

  it('left nothing behind: no record, no workflow, no lease, no dataset, no tag', async () => {
    expect(await stack.catalog.list({})).toEqual([]);
    expect(await stack.catalog.tags()).toEqual([]);
    expect(await stack.catalog.datasets.versions()).toEqual([]);
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.queue).toEqual([]);
    expect(pool.slots.filter((slot) => slot.lease !== null)).toEqual([]);
    const started = [];
    for await (const execution of stack.client.workflow.list({
      query: `WorkflowType IN ('experimentWorkflow', 'batchWorkflow', 'tagWorkflow', 'datasetWorkflow')`,
    }))
      started.push(execution.workflowId);
    expect(started).toEqual([]);
  }, 60_000);
});

describe('refused by validation, once submitted (exit 2, validation_failed, never retried)', () => {
  it('an unknown dataset, a config over its bound, a program not on the run PATH, a repository that cannot be cloned', async () => {
    const bigConfig = { blob: 'x'.repeat(MAX_CONFIG_BYTES + 1024) };
    await fs.writeFile(path.join(source.repo, 'big.json'), JSON.stringify(bigConfig));
    await commitAll(source.repo, 'a config over the bound');
    const cases: [string, string[], RegExp][] = [
      [
        'ghost@latest',
        ['--dataset', 'ghost@latest'],
        /--dataset ghost@latest: there is no dataset ghost .*pass --wait-for-data to wait for its first version/,
      ],
      ['a 1 MiB config', ['--config', 'big.json'], /config big\.json is 1\.0 MiB; a config has at most 1\.0 MiB/],
      [
        '--env PATH without python3',
        ['--env', `PATH=${scratch}`],
        /command "python3" is not installed on corpushost \(not found on the run's PATH, set by --env PATH\)/,
      ],
      [
        'a --repo URL that cannot be cloned',
        ['--repo', `file://${scratch}/absent.git`, '--commit', source.commit],
        /^--repo file:\/\/.*absent\.git could not be cloned on this host: .*(does not appear to be a git repository|not found)/,
      ],
    ];
    await Promise.all(
      cases.map(async ([name, extra, message]) => {
        const child = await cli(runArgs(extra, ['python3', 'train.py'], 'corpus-validated'));
        expect(child.exitCode, `${name}: ${child.stderr}`).toBe(2);
        const result = JSON.parse(child.stdout as string) as ExperimentResult;
        expect(result, name).toMatchObject({
          status: 'validation_failed',
          consecutive_crashes: 0,
          should_abort: false,
        });
        expect(result.experiment_id, name).toMatch(/^exp-corpus-validated-/);
        expect(result.reason, name).toMatch(message);
        expectNoRawError(name, `${child.stdout}\n${child.stderr}`);
        // Refused at validation, never placed: one attempt, no lease, no training.
        const record = await stack.catalog.get(result.experiment_id!);
        expect(record, name).toMatchObject({ status: 'validation_failed', worker: null });
      }),
    );
    const pool = await stack.client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
    expect(pool.slots.filter((slot) => slot.lease !== null)).toEqual([]);
  }, 300_000);

  it('show and wait take a batch ID', async () => {
    const submitted = await cli([
      'batch',
      '--tag',
      'corpus-batch',
      '--category',
      'hyperparams',
      '--dataset',
      'absent-dataset',
      '--base',
      base,
      '--detach',
      '--json',
      variant,
      '--',
      'python3',
      'train.py',
    ]);
    expect(submitted.exitCode, submitted.stderr as string).toBe(0);
    const batchId = (JSON.parse(submitted.stdout as string) as { batch_id: string }).batch_id;
    const shown = await cli(['show', batchId, '--json']);
    expect(shown.exitCode, shown.stderr as string).toBe(0);
    expect(JSON.parse(shown.stdout as string)).toMatchObject({
      batch_id: batchId,
      tag: 'corpus-batch',
      base,
      children: [{ experiment_id: expect.stringMatching(/-v1$/), commit: variant }],
    });
    const waited = await cli(['wait', batchId, '--json']);
    expect(JSON.parse(waited.stdout as string)).toMatchObject({ batch_id: batchId, action: 'reset' });
    const child = (JSON.parse(waited.stdout as string) as { children: ExperimentResult[] }).children[0]!;
    expect(child.status).toBe('validation_failed');
    expect(waited.exitCode).toBe(2);
  }, 300_000);
});
