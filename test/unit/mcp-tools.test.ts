import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { errorResult, jsonResult, logPage, logsResult } from '../../src/mcp/result.js';
import {
  BatchResultOutput,
  BestOutput,
  ExperimentResultOutput,
  HistoryOutput,
  ShowOutput,
  SuggestOutput,
  WaitOutput,
} from '../../src/mcp/outputs.js';
import {
  BatchInput,
  batchArgs,
  HistoryInput,
  historyArgs,
  IdInput,
  idArgs,
  LogsInput,
  logsArgs,
  RunInput,
  runArgs,
  SuggestInput,
  TagInput,
  tagArgs,
} from '../../src/mcp/tools.js';

const CWD = path.resolve('/srv/work');
const SHA = 'a'.repeat(40);
const messages = (result: { success: boolean; error?: { issues: { message: string; path: PropertyKey[] }[] } }) =>
  result.error?.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`) ?? [];

describe('the MCP run tool', () => {
  const minimal = { tag: 'speed', hypothesis: 'wider MLP', category: 'architecture' };

  it('builds the argv of `expctl run --json`, values as --flag=value, the command after --', () => {
    const input = RunInput.parse({
      ...minimal,
      command: ['python3', 'train.py', '--lr', '3e-4'],
      repo: 'proj',
      commit: 'HEAD~1',
      env: { LR: '0.1', EMPTY: '' },
      time_budget: 60,
      timeout: 120,
      gpu_class: 'h100',
      gpus: 4,
      metric: 'val_loss',
      maximize: true,
      simplification: false,
      idempotency_key: 'k1',
      datasets: ['tokens@latest'],
      wait_for_data: true,
      priority: -5,
    });
    const { args, cwd } = runArgs(input, CWD);
    const repo = path.join(CWD, 'proj');
    expect(cwd).toBe(repo);
    expect(args).toEqual([
      'run',
      '--tag=speed',
      '--hypothesis=wider MLP',
      '--category=architecture',
      `--repo=${repo}`,
      '--dataset=tokens@latest',
      '--wait-for-data',
      '--gpu-class=h100',
      '--gpus=4',
      '--time-budget=60',
      '--timeout=120',
      '--metric=val_loss',
      '--maximize',
      '--idempotency-key=k1',
      '--priority=-5',
      '--env=LR=0.1',
      '--env=EMPTY=',
      '--commit=HEAD~1',
      '--json',
      '--',
      'python3',
      'train.py',
      '--lr',
      '3e-4',
    ]);
  });

  it("defaults the repository to the server's cwd, and adds no -- without a command", () => {
    const { args, cwd } = runArgs(RunInput.parse({ ...minimal, detach: true }), CWD);
    expect(cwd).toBe(CWD);
    expect(args).toEqual([
      'run',
      '--tag=speed',
      '--hypothesis=wider MLP',
      '--category=architecture',
      `--repo=${CWD}`,
      '--detach',
      '--json',
    ]);
  });

  it('passes a git URL as given and runs it from the server cwd', () => {
    const url = 'https://example.com/team/model.git';
    const { args, cwd } = runArgs(RunInput.parse({ ...minimal, repo: url, commit: SHA }), CWD);
    expect(cwd).toBe(CWD);
    expect(args).toContain(`--repo=${url}`);
    expect(args).toContain(`--commit=${SHA}`);
  });

  it('keeps a value that starts with "-" one value (it cannot read as a flag)', () => {
    const { args } = runArgs(RunInput.parse({ ...minimal, hypothesis: '--json --detach' }), CWD);
    expect(args).toContain('--hypothesis=--json --detach');
    expect(args.filter((a) => a === '--detach')).toEqual([]);
  });

  it('refuses with the CLI rules: bad tag, missing category, unknown category, bad env name, bad metric', () => {
    expect(messages(RunInput.safeParse({ ...minimal, tag: 'has space' }))).toEqual([
      expect.stringMatching(/^tag: a tag is letters, digits/),
    ]);
    expect(messages(RunInput.safeParse({ tag: 'speed', hypothesis: 'x' }))[0]).toMatch(/^category: /);
    expect(messages(RunInput.safeParse({ ...minimal, category: 'vibes' }))[0]).toMatch(/^category: /);
    expect(messages(RunInput.safeParse({ ...minimal, hypothesis: '   ' }))[0]).toMatch(/say what the experiment tests/);
    expect(RunInput.safeParse({ ...minimal, env: { 'BAD-NAME': '1' } }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, metric: '1st' }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, gpu_class: 'H100' }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, gpus: 0 }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, gpus: 'two' }).success).toBe(false);
    expect(RunInput.parse({ ...minimal, gpus: 'all' }).gpus).toBe('all');
    expect(RunInput.safeParse({ ...minimal, command: [] }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, time_budget: 0 }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, priority: 1001 }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, config: '/etc/passwd' }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, datasets: ['../up'] }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, commit: '--upload-pack=x' }).success).toBe(false);
    expect(RunInput.safeParse({ ...minimal, secret: ['TOKEN'] }).success).toBe(false);
    expect(messages(RunInput.safeParse({ ...minimal, time_budget: 100, timeout: 50 }))).toEqual([
      'timeout: the kill limit (timeout) must be at least the training budget (time_budget)',
    ]);
  });
});

describe('the MCP batch tool', () => {
  it('builds `expctl batch --json` with the commits as arguments, then -- and the command', () => {
    const input = BatchInput.parse({
      tag: 'speed',
      category: 'hyperparams',
      commits: ['c1', SHA],
      base: 'main',
      deadline: 600,
      repo: '/abs/repo',
      command: ['python3', 'variant.py'],
    });
    expect(batchArgs(input, CWD)).toEqual({
      args: [
        'batch',
        '--tag=speed',
        '--category=hyperparams',
        '--repo=/abs/repo',
        '--base=main',
        '--deadline=600',
        '--json',
        'c1',
        SHA,
        '--',
        'python3',
        'variant.py',
      ],
      cwd: '/abs/repo',
    });
  });

  it('needs at least one commit, no commit that reads as a flag, and takes no --commit', () => {
    const base = { tag: 'speed', category: 'other' };
    expect(messages(BatchInput.safeParse({ ...base, commits: [] }))[0]).toMatch(/^commits: /);
    expect(BatchInput.safeParse({ ...base, commits: ['-x'] }).success).toBe(false);
    expect(BatchInput.safeParse({ ...base, commits: ['c1'], commit: SHA }).success).toBe(false);
    expect(BatchInput.safeParse({ ...base, commits: ['c1'] }).success).toBe(true);
    expect(BatchInput.safeParse({ ...base, commits: ['c1'], deadline: -1 }).success).toBe(false);
  });
});

describe('the other MCP tools', () => {
  it('wait, show and cancel take one ID, never one that reads as a flag', () => {
    expect(idArgs('wait', IdInput.parse({ id: 'batch-t-1' }), CWD)).toEqual({
      args: ['wait', '--json', 'batch-t-1'],
      cwd: CWD,
    });
    expect(idArgs('show', { id: 'exp-t-1' }, CWD).args).toEqual(['show', '--json', 'exp-t-1']);
    expect(idArgs('cancel', { id: 'exp-t-1' }, CWD).args).toEqual(['cancel', '--json', 'exp-t-1']);
    expect(IdInput.safeParse({ id: '--help' }).success).toBe(false);
    expect(IdInput.safeParse({ id: 'exp t' }).success).toBe(false);
  });

  it('history passes only the filters given', () => {
    expect(historyArgs(HistoryInput.parse({}), CWD).args).toEqual(['history', '--json']);
    expect(
      historyArgs(HistoryInput.parse({ tag: 'speed', status: 'completed', category: 'other', limit: 5 }), CWD).args,
    ).toEqual(['history', '--tag=speed', '--status=completed', '--category=other', '--limit=5', '--json']);
    expect(HistoryInput.safeParse({ limit: 0 }).success).toBe(false);
    expect(HistoryInput.safeParse({ category: 'vibes' }).success).toBe(false);
  });

  it('best and suggest need a valid tag', () => {
    expect(tagArgs('best', TagInput.parse({ tag: 'speed' }), CWD).args).toEqual(['best', '--tag=speed', '--json']);
    expect(tagArgs('suggest', { tag: 'speed' }, CWD).args).toEqual(['suggest', '--tag=speed', '--json']);
    expect(tagArgs('suggest', SuggestInput.parse({ tag: 'speed', k: 4 }), CWD).args).toEqual([
      'suggest',
      '--tag=speed',
      '--k=4',
      '--json',
    ]);
    expect(tagArgs('suggest', SuggestInput.parse({ tag: 'speed', all_categories: true }), CWD).args).toEqual([
      'suggest',
      '--tag=speed',
      '--all-categories',
      '--json',
    ]);
    expect(SuggestInput.safeParse({ tag: 'speed', k: 65 }).success).toBe(false);
    expect(TagInput.safeParse({}).success).toBe(false);
    expect(TagInput.safeParse({ tag: '-x' }).success).toBe(false);
  });

  it('logs reads the whole log (the CLI has no paging flags) and pages it here', () => {
    expect(logsArgs(LogsInput.parse({ id: 'exp-t-1', offset: 10, limit: 100 }), CWD).args).toEqual([
      'logs',
      '--all',
      'exp-t-1',
    ]);
    expect(LogsInput.safeParse({ id: 'exp-t-1', limit: 0 }).success).toBe(false);
    expect(LogsInput.safeParse({ id: 'exp-t-1', limit: 2 * 1024 * 1024 }).success).toBe(false);
    expect(LogsInput.safeParse({ id: 'exp-t-1', offset: -1 }).success).toBe(false);
  });
});

describe('tool results', () => {
  it("returns the CLI's JSON unchanged, its exit code in _meta only", () => {
    const stdout = `${JSON.stringify({ experiment_id: 'exp-1', status: 'command_failed' }, null, 2)}\n`;
    const result = jsonResult({ stdout, stderr: '', exitCode: 3 });
    expect(result.structuredContent).toEqual({ experiment_id: 'exp-1', status: 'command_failed' });
    expect(result.content).toEqual([{ type: 'text', text: stdout.trim() }]);
    expect(result._meta).toEqual({ exitCode: 3 });
    expect(result.isError).toBeUndefined();
  });

  it('wraps a JSON array (history) under a key, the text stays the array', () => {
    const result = jsonResult({ stdout: '[{"id":"a"}]\n', stderr: '', exitCode: 0 }, 'experiments');
    expect(result.structuredContent).toEqual({ experiments: [{ id: 'a' }] });
    expect(result.content).toEqual([{ type: 'text', text: '[{"id":"a"}]' }]);
  });

  it('is a tool error when no JSON was printed, with the stderr text', () => {
    const result = jsonResult({ stdout: '', stderr: "error: unknown option '--x'\n", exitCode: 1 });
    expect(result).toEqual({
      content: [{ type: 'text', text: "error: unknown option '--x'" }],
      isError: true,
      _meta: { exitCode: 1 },
    });
    expect(errorResult({ stdout: '', stderr: '', exitCode: undefined, failure: 'spawn ENOENT' }).content).toEqual([
      { type: 'text', text: 'spawn ENOENT' },
    ]);
  });

  it('is a tool error when permission was denied, with the JSON still there', () => {
    const stdout = '{"error":"permission_denied","message":"no"}';
    const result = jsonResult({ stdout, stderr: 'expctl: no', exitCode: 6 });
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toEqual({ error: 'permission_denied', message: 'no' });
  });
});

describe('log pages', () => {
  const log = new TextEncoder().encode('line 1\nline 2 é\nline 3\n');

  it('pages from an offset, next_offset continues, eof at the end', () => {
    const first = logPage('e', log, 7, 0);
    expect(first).toEqual({
      experiment_id: 'e',
      offset: 0,
      next_offset: 7,
      size: log.length,
      eof: false,
      text: 'line 1\n',
    });
    const rest = logPage('e', log, 1000, first.next_offset);
    expect(rest.text).toBe('line 2 é\nline 3\n');
    expect(rest.eof).toBe(true);
    expect(logPage('e', log, 10, 1000)).toMatchObject({ offset: log.length, text: '', eof: true });
  });

  it('gives the tail without an offset', () => {
    expect(logPage('e', log, 7).text).toBe('line 3\n');
  });

  it('never cuts a UTF-8 character in two', () => {
    const at = new TextDecoder().decode(log).indexOf('é');
    // A page ending inside "é" (2 bytes) stops before it; the next page starts with it.
    const page = logPage('e', log, at + 1, 0);
    expect(page.next_offset).toBe(at);
    expect(logPage('e', log, 1, at).text).toBe('é');
    // A tail starting inside it starts after it.
    expect(logPage('e', log, log.length - at - 1).text).toBe('\nline 3\n');
  });

  it("is an empty page with the CLI's note when the run has no log yet, an error when the CLI failed", () => {
    const empty = logsResult('e', { stdout: new Uint8Array(), stderr: 'expctl: e has no log\n', exitCode: 0 }, 100);
    expect(empty.structuredContent).toMatchObject({ text: '', size: 0, eof: true, note: 'expctl: e has no log' });
    const failed = logsResult('e', { stdout: new Uint8Array(), stderr: 'expctl: no experiment e\n', exitCode: 1 }, 100);
    expect(failed).toMatchObject({ isError: true, _meta: { exitCode: 1 } });
  });
});

describe('tool output schemas (the CLI output schemas, every top-level field optional)', () => {
  it("accept the CLI's error JSON in place of a result", () => {
    const error = { error: 'permission_denied', message: 'no' };
    for (const schema of [ExperimentResultOutput, BatchResultOutput, WaitOutput, ShowOutput, BestOutput, SuggestOutput])
      expect(schema.safeParse(error).success).toBe(true);
  });

  it('check the fields they name: snake_case, with their types', () => {
    expect(ExperimentResultOutput.safeParse({ experiment_id: 'e', near_miss: 'no' }).success).toBe(false);
    expect(HistoryOutput.safeParse({ experiments: [{ id: 'a' }] }).success).toBe(false);
    expect(BestOutput.safeParse({ metric: 0.5, by_class: { cpu: 1 } }).success).toBe(false);
  });

  it('show also takes what show prints for a promotion or a dataset version', () => {
    const promotion = { record: { promotion_id: 'promo-1', status: 'promoted', stages: [] }, audit: [] };
    expect(ShowOutput.safeParse(promotion).success).toBe(true);
    expect(ShowOutput.safeParse({ dataset: 'train', version: 1, status: 'passed', shards: [] }).success).toBe(true);
  });
});
