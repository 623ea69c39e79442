import { describe, expect, it } from 'vitest';
import {
  parseBatchFlags,
  parseEnvPair,
  parseNumber,
  parseRunFlags,
  problemAsFlag,
  splitCommandLine,
  type RawRunOptions,
} from '../../src/cli/parse.js';

const base: RawRunOptions = { tag: ['t1'], hypothesis: ['h'], category: ['other'] };
const problemsOf = (raw: RawRunOptions) => parseRunFlags({ ...base, ...raw }).problems;

describe('strict numbers', () => {
  it.each(['300', '2.5', '0', '007', '-3'])('accepts %j', (raw) => {
    expect(parseNumber('--x', raw)).toBe(Number(raw));
  });
  it.each([
    'abc',
    '0x10',
    '',
    ' 5',
    '5 ',
    '1e3',
    'NaN',
    'Infinity',
    '-Infinity',
    '+5',
    '.5',
    '5.',
    '5s',
    '0b1',
    '0o7',
    '1_000',
    '٣',
  ])('refuses %j, naming the flag', (raw) => {
    expect(() => parseNumber('--time-budget', raw)).toThrow(/^--time-budget ".*": expected a decimal number/);
  });
  it('wants integers where integers are meant, and checks ranges', () => {
    expect(() => parseNumber('--priority', '1.5', { integer: true })).toThrow(/--priority "1.5": expected an integer/);
    expect(parseNumber('--priority', '-7', { integer: true, min: -1000, max: 1000 })).toBe(-7);
    expect(() => parseNumber('--priority', '1001', { integer: true, max: 1000 })).toThrow(/at most 1000/);
    expect(() => parseNumber('--time-budget', '0', { positive: true })).toThrow(/greater than 0/);
    expect(() => parseNumber('--gpu-mem', '-1', { integer: true, min: 0 })).toThrow(/at least 0/);
    expect(() => parseNumber('--gpu-mem', '99999999999999999999', { integer: true })).toThrow(/out of range/);
  });
});

describe('run flags', () => {
  it('parses a full request', () => {
    const { flags, problems } = parseRunFlags({
      ...base,
      dataset: ['a', 'b'],
      runtimeTag: ['cu12'],
      gpuMem: ['40000'],
      timeBudget: ['300'],
      timeout: ['600'],
      setup: ['uv sync --frozen'],
      setupTimeout: ['120'],
      priority: ['-2'],
      maxReplacements: ['0'],
      env: ['A=1', 'B=x=y', 'C='],
      metric: ['score'],
      maximize: true,
      simplification: true,
    });
    expect(problems).toEqual([]);
    expect(flags).toMatchObject({
      tag: 't1',
      datasets: ['a', 'b'],
      runtimeTags: ['cu12'],
      gpuMemoryMb: 40000,
      timeBudgetSeconds: 300,
      timeoutSeconds: 600,
      setup: ['uv', 'sync', '--frozen'],
      setupTimeoutSeconds: 120,
      priority: -2,
      maxReplacements: 0,
      env: { A: '1', B: 'x=y', C: '' },
      metric: 'score',
      maximize: true,
      simplification: true,
    });
  });

  it('defaults: priority 0, no numbers given means none set', () => {
    const { flags, problems } = parseRunFlags(base);
    expect(problems).toEqual([]);
    expect(flags).toMatchObject({ priority: 0, datasets: [], env: {}, maximize: false, simplification: false });
    expect(flags.timeBudgetSeconds).toBeUndefined();
    expect(flags.maxReplacements).toBeUndefined();
  });

  it('refuses a repeated single-valued flag, naming it; repeatable flags stay repeatable', () => {
    expect(problemsOf({ tag: ['a', 'b'] })).toEqual(['--tag was given 2 times ("a", "b"); it takes one value']);
    expect(problemsOf({ timeBudget: ['10', '20'] })).toEqual([
      expect.stringMatching(/^--time-budget was given 2 times/),
    ]);
    expect(problemsOf({ idempotencyKey: ['k', 'k'] })).toEqual([
      expect.stringMatching(/^--idempotency-key was given 2 times/),
    ]);
    expect(problemsOf({ dataset: ['a', 'b'], runtimeTag: ['x', 'y'], env: ['A=1', 'B=2'] })).toEqual([]);
  });

  it('lists every problem at once, each with its own message', () => {
    const problems = problemsOf({
      priority: ['abc'],
      timeBudget: ['0x10'],
      env: ['NOEQUALS', '=v'],
      metric: ['val bpb'],
      grace: ['30'],
      gpuMem: ['1.5'],
      maxReplacements: ['1e3'],
    });
    expect(problems).toHaveLength(8);
    expect(problems).toContain('--env "NOEQUALS": --env expects KEY=VALUE');
    expect(problems).toContain('--env "=v": --env expects KEY=VALUE');
    expect(problems.join('\n')).toMatch(/--grace is gone: .*--timeout/);
    expect(problems.join('\n')).toMatch(/--metric "val bpb": expected a metric name/);
    expect(problems.join('\n')).toMatch(/--priority "abc": expected an integer/);
    expect(problems.join('\n')).toMatch(/--time-budget "0x10": expected a decimal number/);
    expect(problems.join('\n')).toMatch(/--gpu-mem "1.5": expected an integer/);
    expect(problems.join('\n')).toMatch(/--max-replacements "1e3": expected an integer/);
  });

  it('--gpus takes a count of GPUs or all, and names the flag when it is neither', () => {
    expect(parseRunFlags(base).flags.gpus).toBeUndefined();
    expect(parseRunFlags({ ...base, gpus: ['4'] }).flags.gpus).toBe(4);
    expect(parseRunFlags({ ...base, gpus: ['all'] }).flags.gpus).toBe('all');
    expect(problemsOf({ gpus: ['0'] })).toEqual(['--gpus "0": must be at least 1']);
    expect(problemsOf({ gpus: ['65'] })).toEqual(['--gpus "65": must be at most 64']);
    expect(problemsOf({ gpus: ['two'] })).toEqual([
      '--gpus "two": expected a GPU count such as "4", or "all" (every GPU of one host)',
    ]);
    expect(problemsOf({ gpus: ['2.5'] })).toEqual([expect.stringMatching(/^--gpus "2.5": expected a GPU count/)]);
    expect(problemsOf({ gpus: ['2', '4'] })).toEqual([expect.stringMatching(/^--gpus was given 2 times/)]);
  });

  it('refuses the same --env variable twice, a malformed tag and missing required flags', () => {
    expect(problemsOf({ env: ['A=1', 'A=2'] })).toEqual(['--env A was given more than once; give each variable once']);
    expect(problemsOf({ tag: ['bad tag!'] })).toEqual([expect.stringMatching(/^--tag "bad tag!": a tag is letters/)]);
    expect(parseRunFlags({}).problems).toEqual([
      '--tag T is required',
      '--hypothesis TEXT is required',
      '--category C is required',
    ]);
  });

  it('shows untrusted values escaped in its messages', () => {
    expect(problemsOf({ priority: ['\u001b[31m1'] })[0]).toContain('"\\\\x1b[31m1"');
  });
});

describe('--env and --setup', () => {
  it('splits KEY=VALUE at the first "="', () => {
    expect(parseEnvPair('K=a=b')).toEqual(['K', 'a=b']);
    expect(() => parseEnvPair('K')).toThrow('--env expects KEY=VALUE');
  });

  it('splits a setup command into words without a shell', () => {
    expect(splitCommandLine('--setup', 'uv sync --frozen')).toEqual(['uv', 'sync', '--frozen']);
    expect(splitCommandLine('--setup', `  pip  install 'a b' "c \\"d\\"" e\\ f '' `)).toEqual([
      'pip',
      'install',
      'a b',
      'c "d"',
      'e f',
      '',
    ]);
    expect(splitCommandLine('--setup', `echo '$HOME && x' "a|b"`)).toEqual(['echo', '$HOME && x', 'a|b']);
  });

  it.each([
    ['uv sync && make', /"&" is not allowed unquoted/],
    ['make; rm x', /";" is not allowed unquoted/],
    ['echo $HOME', /"\$" is not allowed unquoted/],
    ['cat < x', /"<" is not allowed unquoted/],
    ["echo 'open", /unterminated ' quote/],
    ['echo \\', /lone backslash/],
    ['   ', /expected a command/],
  ])('refuses %j', (raw, message) => {
    expect(() => splitCommandLine('--setup', raw)).toThrow(message);
  });
});

describe('schema problems as flags', () => {
  it.each([
    ['datasets.1: must not contain ".."', '--dataset: must not contain ".."'],
    ['checkpoint: not an absolute path', '--checkpoint: not an absolute path'],
    ['requirements.gpuMemoryMb: Too small', '--gpu-mem: Too small'],
    ['timeoutSeconds: at least the budget', '--timeout: at least the budget'],
    ['env.A B: Invalid key in record', '--env A B: Invalid key in record'],
    ['metric.name: bad', '--metric: bad'],
    ['(request): something', '(request): something'],
  ])('%j', (problem, expected) => {
    expect(problemAsFlag(problem)).toBe(expected);
  });
});

describe('batch flags', () => {
  const batch = { tag: ['t'], category: ['other'] };
  it("takes run's flags with the hypothesis optional, and its own base and deadline", () => {
    const { flags, problems } = parseBatchFlags({ ...batch, base: ['main'], deadline: ['90'] });
    expect(problems).toEqual([]);
    expect(flags).toMatchObject({ tag: 't', base: 'main', deadlineSeconds: 90 });
    expect(flags.hypothesis).toBeUndefined();
  });

  it('refuses --commit, a repeated --base and a deadline that is not a positive number, all at once', () => {
    const { problems } = parseBatchFlags({ ...batch, commit: ['abc'], base: ['a', 'b'], deadline: ['0'] });
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^--commit: a batch takes its variants as arguments/);
    expect(problems[1]).toMatch(/^--base was given 2 times/);
    expect(problems[2]).toMatch(/^--deadline/);
  });
});
