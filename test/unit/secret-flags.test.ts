import { describe, expect, it } from 'vitest';
import { restoreSecrets } from '../../src/cli/commands/actions.js';
import { policyFromOptions } from '../../src/cli/commands/tag.js';
import { FlagError, parseRunFlags, parseSecretFlag, problemAsFlag, type SecretSources } from '../../src/cli/parse.js';
import { publicRequest, REDACTED } from '../../src/domain/redact.js';
import { formatIssues, ExperimentRequestSchema, parseExperimentRequest } from '../../src/domain/request.js';

const VALUE = 'tok-3f9a1c77e2';

/** An environment and a file system of its own, so nothing here reads the real ones. */
function sources(env: Record<string, string | undefined>, files: Record<string, string> = {}): SecretSources {
  return {
    env,
    readFile(file) {
      if (file in files) return files[file]!;
      throw Object.assign(new Error(`ENOENT: no such file, open '${file}'`), { code: 'ENOENT' });
    },
  };
}

describe('--secret NAME and --secret NAME=@FILE', () => {
  it('takes the value from the submitter’s variable of that name', () => {
    expect(parseSecretFlag('API_TOKEN', sources({ API_TOKEN: VALUE }))).toEqual(['API_TOKEN', VALUE]);
  });

  it('takes the value from a file, one trailing newline trimmed', () => {
    const files = {
      'tok.txt': `${VALUE}\n`,
      'crlf.txt': `${VALUE}\r\n`,
      'two.txt': `${VALUE}\n\n`,
      'k.pem': 'a\nb\nc\n',
    };
    const from = (file: string) => parseSecretFlag(`API_TOKEN=@${file}`, sources({}, files))[1];
    expect(from('tok.txt')).toBe(VALUE);
    expect(from('crlf.txt')).toBe(VALUE);
    expect(from('two.txt')).toBe(`${VALUE}\n`);
    expect(from('k.pem')).toBe('a\nb\nc');
  });

  it.each([
    [
      'API_TOKEN',
      {},
      {},
      /^--secret API_TOKEN: the variable API_TOKEN is not set in this environment; export it, or pass --secret API_TOKEN=@FILE$/,
    ],
    ['API_TOKEN', { API_TOKEN: '' }, {}, /the variable API_TOKEN is empty/],
    ['API_TOKEN=@missing.txt', {}, {}, /^--secret API_TOKEN=@missing.txt: cannot read the file \(ENOENT\)$/],
    ['API_TOKEN=@empty.txt', {}, { 'empty.txt': '\n' }, /^--secret API_TOKEN=@empty.txt: the file is empty$/],
    ['API_TOKEN=@', {}, {}, /give NAME .* or NAME=@FILE; a value on the command line would show in ps/],
    [`API_TOKEN=${VALUE}`, {}, {}, /a value on the command line would show in ps/],
    ['API_TOKEN', { API_TOKEN: 'abc' }, {}, /the value has fewer than 4 characters/],
    ['9BAD', {}, {}, /^--secret: expected NAME or NAME=@FILE/],
    [VALUE, {}, {}, /what was given is not shown/],
  ])('refuses %j with a message that names the variable and never shows a value', (raw, env, files, message) => {
    let error: unknown;
    try {
      parseSecretFlag(raw, sources(env, files));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(FlagError);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain(VALUE);
    expect((error as Error).message).not.toContain('abc"');
  });

  it('is repeatable in run, each name once, and never also an --env', () => {
    const env = { A_TOKEN: VALUE, B_TOKEN: `${VALUE}-b` };
    const parsed = parseRunFlags(
      { tag: ['t'], hypothesis: ['h'], category: ['other'], secret: ['A_TOKEN', 'B_TOKEN'], env: ['LR=0.1'] },
      sources(env),
    );
    expect(parsed.problems).toEqual([]);
    expect(parsed.flags.secrets).toEqual({ A_TOKEN: VALUE, B_TOKEN: `${VALUE}-b` });
    const twice = parseRunFlags(
      { tag: ['t'], hypothesis: ['h'], category: ['other'], secret: ['A_TOKEN', 'A_TOKEN'], env: ['B_TOKEN=x'] },
      sources({ ...env }),
    );
    expect(twice.problems).toEqual(['--secret A_TOKEN was given more than once; give each secret once']);
    const both = parseRunFlags(
      { tag: ['t'], hypothesis: ['h'], category: ['other'], secret: ['A_TOKEN'], env: ['A_TOKEN=x'] },
      sources(env),
    );
    expect(both.problems).toEqual(['A_TOKEN is given both as --env and as --secret; give it once']);
    expect(JSON.stringify([twice, both].map((p) => p.problems))).not.toContain(VALUE);
  });

  it('is checked by the request schema too, without quoting values', () => {
    const base = { tag: 't', hypothesis: 'h', category: 'other', repo: '/r', commit: 'a'.repeat(40) };
    expect(parseExperimentRequest({ ...base, secrets: { API_TOKEN: VALUE } }).secrets).toEqual({ API_TOKEN: VALUE });
    expect(parseExperimentRequest(base).secrets).toEqual({});
    const problemsOf = (input: object) => {
      const result = ExperimentRequestSchema.safeParse({ ...base, ...input });
      return result.success ? [] : formatIssues(result.error).map(problemAsFlag);
    };
    const problems = [
      ...problemsOf({ secrets: { SHORT: 'abc', 'BAD-NAME': VALUE } }),
      ...problemsOf({ env: { API_TOKEN: 'x' }, secrets: { API_TOKEN: VALUE } }),
    ];
    expect(problems).toEqual([
      expect.stringMatching(/^--secret SHORT: a secret must be at least 4 characters/),
      expect.stringMatching(/^--secret BAD-NAME: /),
      '--secret API_TOKEN: API_TOKEN is given both as --env and as --secret; give it once',
    ]);
    expect(problems.join('\n')).not.toContain(VALUE);
  });
});

describe('retry and rerun give the secrets again', () => {
  const original = parseExperimentRequest({
    tag: 't',
    hypothesis: 'h',
    category: 'other',
    repo: '/r',
    commit: 'a'.repeat(40),
    env: { LR: '0.1', HF_TOKEN: 'hf_request_secret' },
    secrets: { API_TOKEN: VALUE },
  });
  const recorded = publicRequest(original, () => 'digest');

  it('from the environment by name, or from --secret NAME=@FILE', () => {
    const fromEnv = restoreSecrets('exp-1', recorded, [], sources({ API_TOKEN: VALUE, HF_TOKEN: 'hf_again' }));
    expect(fromEnv.secrets).toEqual({ API_TOKEN: VALUE });
    expect(fromEnv.env).toEqual({ LR: '0.1', HF_TOKEN: 'hf_again' });
    const fromFile = restoreSecrets(
      'exp-1',
      recorded,
      ['API_TOKEN=@tok.txt'],
      sources({ HF_TOKEN: 'hf_again' }, { 'tok.txt': `${VALUE}-file\n` }),
    );
    expect(fromFile.secrets).toEqual({ API_TOKEN: `${VALUE}-file` });
  });

  it('refuses, naming what is missing, when a secret cannot be found', () => {
    expect(() => restoreSecrets('exp-1', recorded, [], sources({ HF_TOKEN: 'hf_again' }))).toThrow(
      /exp-1 ran with secrets the record does not keep \(API_TOKEN, HF_TOKEN\); give them again: --secret API_TOKEN: the variable API_TOKEN is not set/,
    );
    expect(() => restoreSecrets('exp-1', recorded, ['OTHER=@x'], sources({}, { x: VALUE }))).toThrow(
      /--secret OTHER: exp-1 had no such secret \(it had API_TOKEN, HF_TOKEN\)/,
    );
    const scrubbedCommand = { ...recorded, command: ['python3', 'train.py', '--token', REDACTED] };
    expect(() => restoreSecrets('exp-1', scrubbedCommand, [], sources({ API_TOKEN: VALUE }))).toThrow(
      /ran with secret text in the command that the record does not keep/,
    );
  });
});

describe('tag create --allow-env', () => {
  it('sets the names a tag allows, once each, and refuses what is not a variable name', () => {
    expect(policyFromOptions({ allowEnv: ['NODE_OPTIONS', 'LD_PRELOAD', 'LD_PRELOAD'] }).allowEnv).toEqual([
      'LD_PRELOAD',
      'NODE_OPTIONS',
    ]);
    expect(policyFromOptions({}).allowEnv).toBeUndefined();
    expect(() => policyFromOptions({ allowEnv: ['LD PRELOAD'] })).toThrow(
      /--allow-env "LD PRELOAD": expected an environment variable name/,
    );
  });
});
