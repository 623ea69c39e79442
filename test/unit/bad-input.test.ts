import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHostActivities } from '../../src/activities/host.js';
import { parseEnvPair, parseRunFlags, problemAsFlag, type RawRunOptions } from '../../src/cli/parse.js';
import { policyFromOptions } from '../../src/cli/commands/tag.js';
import { porcelainPaths, resolveSource, SourceError } from '../../src/client/source.js';
import {
  formatBytes,
  malformedIdProblem,
  MAX_BATCH_VARIANTS,
  MAX_COMMAND_BYTES,
  MAX_COMMAND_WORDS,
  MAX_DATASET_REFS,
  MAX_ENV_BYTES,
  MAX_ENV_VALUE_BYTES,
  MAX_ENV_VARIABLES,
  MAX_GUARD_CHARS,
  MAX_GUARDS,
  MAX_HYPOTHESIS_CHARS,
  MAX_ID_CHARS,
  MAX_SHARDS_PER_VERSION,
  shardPositionProblem,
  utf8Bytes,
} from '../../src/domain/bounds.js';
import { resolveDatasetRefs } from '../../src/domain/dataset-refs.js';
import { parseExperimentRequest, repoProblem, RequestValidationError } from '../../src/domain/request.js';
import { MAX_BATCH_SIZE } from '../../src/domain/tournament.js';
import { commitsSharingPrefix } from '../helpers/repo.js';

// The bad-input corpus, pure part: every malformed request field is refused by the one schema the
// CLI, the client API and the workflow's validation share, with a message naming the field (as
// the flag that sets it) and the rule. The CLI as processes against a server: test/integration/bad-input.test.ts.

const valid = {
  tag: 't1',
  hypothesis: 'h',
  category: 'other',
  command: ['python3', 'train.py'],
  repo: '/srv/repo',
  commit: 'a'.repeat(40),
};

/** The problems of a request as `expctl run` prints them (flag names, not schema paths). */
function refusalOf(change: Record<string, unknown>): string {
  try {
    parseExperimentRequest({ ...valid, ...change });
  } catch (error) {
    if (!(error instanceof RequestValidationError)) throw error;
    return error.problems.map(problemAsFlag).join('; ');
  }
  return '(accepted)';
}

const big = (bytes: number) => 'x'.repeat(bytes);

describe('the request schema refuses each malformed field, naming its flag and rule', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    [
      '--env name with a space',
      { env: { 'BAD NAME': '1' } },
      /^--env BAD NAME: the name must be an environment variable name/,
    ],
    ['--env name starting with a digit', { env: { '1X': '1' } }, /^--env 1X: the name must be/],
    ['--env value with a NUL byte', { env: { X: 'a\0b' } }, /^--env X: must not contain a NUL byte/],
    [
      '--secret value with a NUL byte',
      { secrets: { TOKEN: 'abcdefgh\0ijkl' } },
      /^--secret TOKEN: must not contain a NUL byte/,
    ],
    ['--secret name with a dash', { secrets: { 'A-B': 'abcdefghijkl' } }, /^--secret A-B: the name must be/],
    [
      '--env value over its bound',
      { env: { X: big(MAX_ENV_VALUE_BYTES + 1) } },
      /^--env X: the value is 32\.0 KiB; a value has at most 32\.0 KiB/,
    ],
    [
      'too many variables',
      { env: Object.fromEntries(Array.from({ length: MAX_ENV_VARIABLES + 1 }, (_, i) => [`V${i}`, '1'])) },
      new RegExp(`^--env: ${MAX_ENV_VARIABLES + 1} variables; at most ${MAX_ENV_VARIABLES}`),
    ],
    [
      'variables over their total bound',
      { env: Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`V${i}`, big(MAX_ENV_VALUE_BYTES - 100)])) },
      /^--env: the variables \(--env and --secret\) take 287\.\d KiB; at most 256\.0 KiB together/,
    ],
    [
      'a command word with a NUL byte',
      { command: ['python3', 'a\0b'] },
      /^the command after --: must not contain a NUL byte/,
    ],
    ['an empty command word', { command: ['python3', ''] }, /^the command after --: an empty word/],
    [
      'an empty command',
      { command: [] },
      /^the command after --: the command is an argv array with at least the program/,
    ],
    [
      'a command of too many words',
      { command: Array.from({ length: MAX_COMMAND_WORDS + 1 }, () => 'a') },
      new RegExp(`^the command after --: at most ${MAX_COMMAND_WORDS} words`),
    ],
    [
      'a command line over its bound',
      { command: ['python3', big(MAX_COMMAND_BYTES)] },
      /^the command after --: 64\.0 KiB long; at most 64\.0 KiB/,
    ],
    ['a --setup line over its bound', { setup: ['sh', big(MAX_COMMAND_BYTES)] }, /^--setup: 64\.0 KiB long; at most/],
    [
      '--hypothesis over its bound',
      { hypothesis: big(MAX_HYPOTHESIS_CHARS + 1) },
      new RegExp(`^--hypothesis: at most ${MAX_HYPOTHESIS_CHARS} characters`),
    ],
    ['--description over its bound', { description: big(2001) }, /^--description: at most 2000 characters/],
    ['--idempotency-key over its bound', { idempotencyKey: big(201) }, /^--idempotency-key: at most 200 characters/],
    [
      '--dataset NAME@-1',
      { datasets: ['climbmix@-1'] },
      /^--dataset: "climbmix@-1": a dataset version is NAME@latest or NAME@V/,
    ],
    [
      '--dataset NAME@0',
      { datasets: ['ghost@0'] },
      /^--dataset: "ghost@0": a dataset version is NAME@latest or NAME@V/,
    ],
    ['--dataset NAME@', { datasets: ['ghost@'] }, /^--dataset: "ghost@": a dataset version/],
    ['--dataset @latest without a name', { datasets: ['@latest'] }, /^--dataset: "@latest": a dataset version/],
    [
      'too many --dataset',
      { datasets: Array.from({ length: MAX_DATASET_REFS + 1 }, (_, i) => `d${i}@latest`) },
      new RegExp(`^--dataset: at most ${MAX_DATASET_REFS} datasets`),
    ],
    ['--repo with an ext:: transport', { repo: 'ext::sh -c touch% pwned' }, /^--repo: must not contain whitespace/],
    [
      '--repo ext:: without spaces',
      { repo: 'ext::evil' },
      /^--repo: git's transport helpers \(NAME::ADDRESS\) are refused/,
    ],
    [
      '--repo with a scheme workers do not fetch',
      { repo: 'ftp://example.com/r.git' },
      /^--repo: the URL scheme ftp is not one workers fetch/,
    ],
    [
      '--repo whose host is an option',
      { repo: 'ssh://-oProxyCommand=x/r.git' },
      /^--repo: the host must not start with "-"/,
    ],
    ['--repo that is an option', { repo: '--upload-pack=x' }, /^--repo: must not start with "-"/],
    ['--repo URL without a host', { repo: 'https:///r.git' }, /^--repo: the URL names no host/],
    [
      '--repo with an unknown scheme-like prefix',
      { repo: 'javascript:alert(1)' },
      /^--repo: "javascript" is not a URL scheme/,
    ],
  ];
  it.each(cases)('%s', (_name, change, message) => {
    expect(refusalOf(change)).toMatch(message);
  });

  it('never quotes a secret value in a refusal', () => {
    const secret = `s3cr3t-${'v'.repeat(MAX_ENV_VALUE_BYTES)}\0`;
    expect(refusalOf({ secrets: { TOKEN: secret } })).not.toContain('s3cr3t');
  });

  it('accepts what is within every bound, and the usual repository forms', () => {
    expect(refusalOf({ env: { PATH: '/usr/bin', X: big(MAX_ENV_VALUE_BYTES) } })).toBe('(accepted)');
    expect(refusalOf({ datasets: ['climbmix@latest', 'climbmix@3', 'local/dir'] })).toBe('(accepted)');
    for (const repo of [
      '/srv/repo',
      'https://github.com/karpathy/autoresearch.git',
      'ssh://git@host:22/r.git',
      'git@github.com:karpathy/autoresearch.git',
      'file:///srv/repo.git',
      'expctl+http://10.0.0.1:9418/fleet.git',
    ])
      expect([repo, repoProblem(repo)]).toEqual([repo, null]);
  });
});

describe('run flags name the flag and the rule', () => {
  const base: RawRunOptions = { tag: ['t1'], hypothesis: ['h'], category: ['other'] };
  it.each([
    ['BAD NAME=1', /^--env "BAD NAME": the name must be an environment variable name/],
    ['1X=1', /^--env "1X": the name must be/],
    ['=1', /^--env "=1": --env expects KEY=VALUE/],
  ])('--env %j', (raw, message) => {
    expect(() => parseEnvPair(raw)).toThrow(message);
    expect(parseRunFlags({ ...base, env: [raw] }).problems).toEqual([expect.stringMatching(message)]);
  });

  it('a long value is quoted cut short, with its length', () => {
    const long = 'h'.repeat(5000);
    const [problem] = parseRunFlags({ ...base, hypothesis: ['h', long] }).problems;
    expect(problem).toBe(
      `--hypothesis was given 2 times ("h", "${'h'.repeat(60)}"… (5000 characters)); it takes one value`,
    );
  });

  it('a --secret file holding a NUL byte is refused at submit time, without its value', () => {
    const { flags, problems } = parseRunFlags(
      { ...base, secret: ['TOKEN=@token.txt'] },
      { env: {}, readFile: () => 'abcdefgh\0ijklmnop\n' },
    );
    expect(problems).toEqual([]);
    const refusal = refusalOf({ secrets: flags.secrets });
    expect(refusal).toMatch(/^--secret TOKEN: must not contain a NUL byte/);
    expect(refusal).not.toContain('abcdefgh');
  });
});

describe('tag create: every malformed policy is refused with the flag and the rule', () => {
  it.each([
    [{ nearMiss: 'NaN' }, /^--near-miss "NaN": expected a decimal number/],
    [{ nearMiss: '-1' }, /^--near-miss "-1": must be at least 0/],
    [{ maxCrashes: '0' }, /^--max-crashes "0": must be at least 1/],
    [{ maxCrashes: '99999999999999999999' }, /^--max-crashes "99999999999999999999": out of range/],
    [{ maxCrashes: '1001' }, /^--max-crashes "1001": must be at most 1000/],
    [{ minImprovement: '1e9' }, /^--min-improvement "1e9": expected a decimal number/],
    [{ metric: 'val bpb' }, /^--metric "val bpb": expected a metric name/],
    [{ guard: ["require('fs').rmSync('/')"] }, /^--guard: guard ".*" must be METRIC OP VALUE/],
    [{ guard: ['process.exit()'] }, /^--guard: guard "process\.exit\(\)" must be METRIC OP VALUE/],
    [
      { guard: [`x==${'a'.repeat(10_000)}`] },
      new RegExp(`^--guard: a guard of 10003 characters; a guard has at most ${MAX_GUARD_CHARS}`),
    ],
    [
      { guard: Array.from({ length: MAX_GUARDS + 1 }, () => 'x==1') },
      new RegExp(`^--guard was given ${MAX_GUARDS + 1} times; a tag has at most ${MAX_GUARDS} guards`),
    ],
    [{ allowEnv: ['BAD NAME'] }, /^--allow-env "BAD NAME": expected an environment variable name/],
  ])('%#: refused', (options, message) => {
    expect(() => policyFromOptions(options)).toThrow(message);
  });
});

describe('bounds', () => {
  it('shard positions: at most MAX_SHARDS_PER_VERSION shards, the index inside them', () => {
    expect(shardPositionProblem(0, MAX_SHARDS_PER_VERSION)).toBeNull();
    expect(shardPositionProblem(0, Number('99999999999999999999'))).toBe(
      'a version holds at most 100000 shards, not 100000000000000000000',
    );
    expect(shardPositionProblem(0, MAX_SHARDS_PER_VERSION + 1)).toMatch(/at most 100000 shards, not 100001/);
    expect(shardPositionProblem(3, 3)).toBe('the shard index must be a whole number from 0 to 2');
    expect(shardPositionProblem(-1, 3)).toMatch(/from 0 to 2/);
    expect(shardPositionProblem(0, 0)).toMatch(/at least 1/);
    expect(shardPositionProblem(0.5, 2)).toMatch(/whole number/);
  });

  it('IDs: what expctl makes passes; traversal, control characters, unicode and huge ones do not', () => {
    for (const id of [
      'exp-t1-20261206-231500-a1b2c3',
      'batch-t1-k0123456789abcdef',
      'expctl-dataset-lm-v3',
      'expctl-pool',
    ])
      expect([id, malformedIdProblem(id)]).toEqual([id, null]);
    expect(malformedIdProblem('../../x')).toMatch(/ASCII letters, digits/);
    expect(malformedIdProblem('exp-\u001b[31mred')).toMatch(/ASCII letters, digits/);
    expect(malformedIdProblem('exp-ünïcode')).toMatch(/ASCII letters, digits/);
    expect(malformedIdProblem('')).toBe('the ID is empty');
    expect(malformedIdProblem('e'.repeat(10_000))).toBe(
      `the ID has 10000 characters; IDs have at most ${MAX_ID_CHARS}`,
    );
  });

  it('sizes are counted in UTF-8 bytes and shown readably', () => {
    expect(utf8Bytes('aé€😀')).toBe(1 + 2 + 3 + 4);
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(50 * 1024 * 1024)).toBe('50.0 MiB');
  });

  it('the batch bound is the one of bounds.ts', () => {
    expect(MAX_BATCH_SIZE).toBe(MAX_BATCH_VARIANTS);
  });

  it('MAX_ENV_BYTES leaves room under what Linux takes for argv and environment together', () => {
    expect(MAX_ENV_BYTES + MAX_COMMAND_BYTES).toBeLessThan(2 * 1024 * 1024);
  });
});

describe('an unknown dataset is refused, a known one without a passed version waits', () => {
  const lookup = {
    latestPassed: () => null,
    version: () => null,
    known: (dataset: string) => dataset === 'arriving',
  };
  it('names the unknown dataset and how to wait for it', () => {
    const resolution = resolveDatasetRefs(['ghost@latest', 'arriving@latest', 'local/dir'], lookup);
    expect(resolution.unknown).toEqual([
      '--dataset ghost@latest: there is no dataset ghost (no version was ever added; `expctl data versions` lists the datasets); pass --wait-for-data to wait for its first version',
    ]);
    expect(resolution.unavailable).toEqual([
      'ghost has no version that passed its gates yet',
      'arriving has no version that passed its gates yet',
    ]);
  });
});

describe('the source a run names', () => {
  it('porcelainPaths keeps the first letter of the first path, and reads renames', () => {
    expect(porcelainPaths(' M train.py\0M  prepare.py\0')).toEqual(['train.py', 'prepare.py']);
    expect(porcelainPaths('R  new.py\0old.py\0 M README.md\0')).toEqual(['new.py', 'README.md']);
    expect(porcelainPaths('')).toEqual([]);
  });

  let repo: string;
  const GIT_ENV = {
    GIT_AUTHOR_NAME: 't',
    GIT_AUTHOR_EMAIL: 't@example.com',
    GIT_COMMITTER_NAME: 't',
    GIT_COMMITTER_EMAIL: 't@example.com',
    GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z',
    GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z',
  };
  const git = (...args: string[]) => execa('git', ['-C', repo, ...args], { env: GIT_ENV });
  beforeAll(async () => {
    repo = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-source-'));
    await git('init', '-q', '-b', 'main');
    await fs.writeFile(path.join(repo, 'train.py'), 'print(1)\n');
    await fs.writeFile(path.join(repo, 'README.md'), 'r\n');
    await git('add', '-A');
    await git('commit', '-qm', 'base');
  });
  afterAll(() => fs.rm(repo, { recursive: true, force: true }));

  it('a dirty tree is refused naming every changed path whole', async () => {
    await fs.writeFile(path.join(repo, 'train.py'), 'print(2)\n');
    await fs.writeFile(path.join(repo, 'README.md'), 'changed\n');
    await expect(resolveSource(repo, undefined)).rejects.toThrow(/uncommitted changes in .* \(README\.md, train\.py\)/);
    await git('checkout', '--', '.');
  });

  it('a prefix two commits share is called ambiguous, not missing', async () => {
    const made = await commitsSharingPrefix(repo);
    expect(made[0]!.slice(0, 4)).toBe(made[1]!.slice(0, 4));
    const prefix = made[0]!.slice(0, 4);
    await expect(resolveSource(repo, prefix)).rejects.toThrow(
      new SourceError(
        `commit ${prefix} is ambiguous in ${await fs.realpath(repo)}: more than one object starts with it; give more characters of the SHA`,
      ),
    );
    await expect(resolveSource(repo, 'f'.repeat(12))).rejects.toThrow(/commit f{12} does not exist/);
    await expect(resolveSource(repo, '--output=x')).rejects.toThrow(/--commit "--output=x": expected a commit SHA/);
    expect((await resolveSource(repo, made[0]!.slice(0, 12))).commit).toBe(made[0]);
  });
});

describe("the worker's validation checks the request again", () => {
  let workDir: string;
  beforeAll(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-validate-'));
  });
  afterAll(() => fs.rm(workDir, { recursive: true, force: true }));

  it('refuses a request that no client checked (a NUL byte, a bad name), before touching the repository', async () => {
    const host = createHostActivities({ host: 'h', workDir, slots: [], datasetsDir: workDir });
    const request = {
      ...parseExperimentRequest(valid),
      env: { 'BAD NAME': '1', X: 'a\0b' },
    };
    const report = await host.validateRequest('exp-unchecked', request);
    expect(report.ok).toBe(false);
    expect(report.reason).toBe(
      'invalid experiment request: env.X: must not contain a NUL byte (a process cannot receive one); env.BAD NAME: the name must be an environment variable name: letters, digits and "_", not starting with a digit',
    );
  });
});
