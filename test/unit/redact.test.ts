import { describe, expect, it } from 'vitest';
import {
  hijackReason,
  hijackRefusal,
  isRecordedWorkerVariable,
  recordedVariables,
} from '../../src/domain/environment.js';
import {
  carriesCredentials,
  isSecretName,
  isSecretVariable,
  publicRequest,
  REDACTED,
  runSecretValues,
  scrubMetrics,
  scrubText,
  SECRET_MARKER,
  secretValues,
} from '../../src/domain/redact.js';
import { parseExperimentRequest } from '../../src/domain/request.js';

describe('secret-looking names', () => {
  it.each([
    ['HF_TOKEN', true],
    ['HUGGING_FACE_HUB_TOKEN', true],
    ['GITHUB_TOKEN', true],
    ['WANDB_API_KEY', true],
    ['OPENAI_API_KEY', true],
    ['AWS_SECRET_ACCESS_KEY', true],
    ['AWS_ACCESS_KEY_ID', true],
    ['DB_PASSWORD', true],
    ['PGPASSWORD', true],
    ['MYSQL_PWD', true],
    ['SMTP_PASS', true],
    ['SSH_PASSPHRASE', true],
    ['SENTRY_DSN', true],
    ['NGROK_AUTHTOKEN', true],
    ['GOOGLE_APPLICATION_CREDENTIALS', true],
    ['SESSION_COOKIE', true],
    ['SLACK_WEBHOOK_URL', true],
    ['apiKey', true],
    ['clientSecret', true],
    ['HASH_SALT', true],
    // Not secrets: counts of tokens, the working directory, authors, ordinary settings.
    ['MAX_TOKENS', false],
    ['TOTAL_TOKENS', false],
    ['total_tokens_M', false],
    ['TOKENIZERS_PARALLELISM', false],
    ['PWD', false],
    ['OLDPWD', false],
    ['GIT_AUTHOR_NAME', false],
    ['DATABASE_URL', false], // judged by its value (below)
    ['PATH', false],
    ['CUDA_VISIBLE_DEVICES', false],
    ['val_bpb', false],
    ['KEYBOARD_LAYOUT', false],
  ])('%s → %s', (name, secret) => {
    expect(isSecretName(name)).toBe(secret);
  });
});

describe('values that carry credentials whatever the variable is called', () => {
  it.each([
    ['DATABASE_URL', 'postgres://app:s3cret@db.internal:5432/app', true],
    ['REDIS_URL', 'redis://:hunter22@cache:6379/0', true],
    ['MONGO_URI', 'mongodb+srv://user:pw@cluster0.example.net/db', true],
    ['PIP_INDEX_URL', 'https://__token__:pypi-AgEIcHlwaS5vcmc@upload.pypi.org/simple', true],
    ['GIT_REMOTE', 'https://ghp_0123456789abcdefghijklmnopqrstuvwxyz@github.com/o/r.git', true],
    ['SENTRY_DSN', 'https://abc123@o1.ingest.sentry.io/42', true],
    ['BLOB', 'https://acct.blob.core.windows.net/c/x?sv=2020-08-04&sig=AbC%2Bd%3D', true],
    ['AZURE_STORAGE', 'DefaultEndpointsProtocol=https;AccountName=a;AccountKey=bWFkZXVw;EndpointSuffix=core', true],
    ['MSSQL', 'Server=tcp:x;Database=d;User ID=u;Password=Pa55w0rd!;', true],
    ['PG', 'host=db user=app password=s3cret dbname=app', true],
    ['KEYDATA', '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----', true],
    ['ANY', 'sk-proj-abcdefghijklmnopqrstuvwxyz0123', true],
    ['REDIS_URL', 'redis://cache:6379/0', false],
    ['HF_HOME', '/data/hf', false],
    ['MLFLOW_TRACKING_URI', 'http://mlflow:5000', false],
    ['LR', '0.001', false],
  ])('%s=%s → %s', (name, value, secret) => {
    expect(isSecretVariable(name, value)).toBe(secret);
    if (!isSecretName(name)) expect(carriesCredentials(value)).toBe(secret);
  });

  it('scrubs flags and tiny values of secret names by name only, never by value', () => {
    const env = { HF_TOKEN: 'hf_request_secret', AUTH_DISABLED: 'true', API_KEY_COUNT: '3', LR: '0.1' };
    expect(secretValues(env)).toEqual(['hf_request_secret']);
  });
});

describe('scrubbing text by shape (what a run did not declare)', () => {
  it.each([
    ['DATABASE_URL=postgres://admin:s3cr3tpw@db:5432/app', `DATABASE_URL=postgres://admin:${REDACTED}@db:5432/app`],
    ['SENTRY_DSN=https://abc123def@o12.ingest.sentry.io/42', `SENTRY_DSN=${REDACTED}`],
    ['HF_TOKEN=short-but-secret', `HF_TOKEN=${REDACTED}`],
    ['export GITHUB_TOKEN="gho_notashape"', `export GITHUB_TOKEN="${REDACTED}"`],
    ['{"api_key": "12345abcde", "lr": 0.1}', `{"api_key": "${REDACTED}", "lr": 0.1}`],
    ["{'password': 'hunter22'}", `{'password': '${REDACTED}'}`],
    ['password: hunter22', `password: ${REDACTED}`],
    ['python train.py --api-key zzzyyyxxx --lr 0.1', `python train.py --api-key ${REDACTED} --lr 0.1`],
    ['python train.py --token=zzzyyyxxx', `python train.py --token=${REDACTED}`],
    ['Authorization: Bearer abc.def.ghijklmnop', `Authorization: Bearer ${REDACTED}`],
    ['Authorization: Basic dXNlcjpwYXNzd29yZA==', `Authorization: Basic ${REDACTED}`],
    ['GET /x?sv=1&sig=AbCdEf123%3D&se=2030', `GET /x?sv=1&sig=${REDACTED}&se=2030`],
    ['https://h/p?access_token=ya29.abc&x=1', `https://h/p?access_token=${REDACTED}&x=1`],
    ['Server=x;User ID=u;Password=Pa55w0rd!;Encrypt=yes', `Server=x;User ID=u;Password=${REDACTED};Encrypt=yes`],
    ['clone https://x-access-token:ghs_abc@github.com/o/r', `clone https://x-access-token:${REDACTED}@github.com/o/r`],
    ['token ghp_0123456789abcdefghijklmnopqrstuvwxyz used', `token ${REDACTED} used`],
    ['key hf_abcdefghijklmnopqrstuvwxyzABCDEF', `key ${REDACTED}`],
    ['sk-ant-api03-abcdefghijklmnopqrstuvwx', REDACTED],
    ['id AKIAIOSFODNN7EXAMPLE', `id ${REDACTED}`],
    ['xoxb-1234567890-abcdefghij', REDACTED],
    ['jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijk', `jwt ${REDACTED}`],
    [
      'before\n-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234\nabcd\n-----END RSA PRIVATE KEY-----\nafter',
      `before\n${REDACTED}\nafter`,
    ],
    // A key block cut by a log's tail or a page: its part is redacted all the same.
    ['-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC', REDACTED],
    ['MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\nnext', `${REDACTED}\nnext`],
    // What must stay as it is: autoresearch's lines, prose, ordinary settings.
    [
      'step 00412 (37.5%) | loss: 3.214077 | lrm: 1.00 | dt: 312ms | tok/sec: 420,117 | mfu: 38.2% | epoch: 1 | remaining: 187s',
      null,
    ],
    ['val_bpb:          0.997900', null],
    ['total_tokens_M:   499.6', null],
    ['the key: attention heads matter', null],
    ['TOKENIZERS_PARALLELISM=false MAX_TOKENS=4096 AUTH_DISABLED=true', null],
    ['redis://cache:6379/0 and https://example.com/a?b=c', null],
    ['commit 0123456789abcdef0123456789abcdef01234567', null],
  ])('%j', (text, expected) => {
    expect(scrubText(text)).toBe(expected ?? text);
  });
});

describe('scrubbing stays linear in the length of the text', () => {
  it.each([
    ['a 1 MiB line of letters', 'a'.repeat(1 << 20)],
    ['base64 lines without a key', `${'A'.repeat(64)}\n`.repeat(1 << 14)],
    ['dotted words', 'a.'.repeat(1 << 19)],
    ['flags', '--a'.repeat(1 << 18)],
    ['assignments', 'a='.repeat(1 << 19)],
    ['URLs', 'http://aaaa@'.repeat(1 << 16)],
  ])('%s', (_, text) => {
    const started = Date.now();
    scrubText(text, ['tok-abcdefgh-1234']);
    // Quadratic behaviour would take minutes here; linear takes well under a second, even on a loaded machine.
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe('scrubbing known secret values', () => {
  const secret = 'sk-abcdefgh12345-sk-tail';

  it('replaces every occurrence, URL-encoded and JSON-escaped forms too', () => {
    expect(scrubText(`a ${secret} b ${secret}`, [secret])).toBe(`a ${REDACTED} b ${REDACTED}`);
    expect(scrubText('value p%40ss%3Aword1 and "p@ss:word1" and p@ss:word1', ['p@ss:word1'])).toBe(
      `value ${REDACTED} and "${REDACTED}" and ${REDACTED}`,
    );
    expect(scrubText('{"t": "quo\\"te-secret"}', ['quo"te-secret'])).toBe(`{"t": "${REDACTED}"}`);
  });

  it('replaces the parts of a secret left where text was cut (a tail, a long line, a page)', () => {
    expect(scrubText('345-sk-tail rest', [secret])).toBe(`${REDACTED} rest`);
    expect(scrubText('start sk-abcdefgh1', [secret])).toBe(`start ${REDACTED}`);
    expect(scrubText(`x sk-abcdefgh12 [… 500 bytes cut by expctl …] 345-sk-tail y`, [secret])).toBe(
      `x ${REDACTED} [… 500 bytes cut by expctl …] ${REDACTED} y`,
    );
    expect(scrubText(`[… earlier output cut by expctl …]\ngh12345-sk-tail`, [secret])).toBe(
      `[… earlier output cut by expctl …]\n${REDACTED}`,
    );
    // Too short a part to tell from ordinary text is left.
    expect(scrubText('tail of it', [secret])).toBe('tail of it');
  });

  it('scrubs each line of a multi-line secret (a key file) on its own too', () => {
    const key = 'line-one-of-the-key\nline-two-of-the-key';
    expect(scrubText('x line-two-of-the-key y', [key])).toBe(`x ${REDACTED} y`);
  });

  it('scrubs the metric block: keys, text values, and numbers that are a numeric secret', () => {
    expect(
      scrubMetrics(
        { val_bpb: 0.99, api_token: `tok ${secret}`, [`k_${'sk-abcdefgh12345-sk-tail'}`]: 1, pin: 48213977, n: 12 },
        [secret, '48213977'],
      ),
    ).toEqual({ val_bpb: 0.99, api_token: `tok ${REDACTED}`, [`k_${REDACTED}`]: 1, pin: REDACTED, n: 12 });
    expect(scrubMetrics(null, [secret])).toBeNull();
  });
});

describe('the public request (state, record, memo, fingerprint)', () => {
  const request = parseExperimentRequest({
    tag: 't',
    hypothesis: 'uses the token sk-abcdefgh12345-sk-tail',
    category: 'other',
    repo: 'https://deploy:pw12345@git.example.com/r.git',
    commit: 'a'.repeat(40),
    command: ['python3', 'train.py', '--token', 'literal-token-1', '--lr', '0.1'],
    env: { LR: '0.1', HF_TOKEN: 'hf_request_secret', DATABASE_URL: 'postgres://u:dbpass99@h/db' },
    secrets: { API_TOKEN: 'sk-abcdefgh12345-sk-tail' },
  });

  it('keeps names, never values', () => {
    const shown = publicRequest(request);
    expect(shown.secrets).toEqual({ API_TOKEN: SECRET_MARKER });
    expect(shown.env).toEqual({ LR: '0.1', HF_TOKEN: REDACTED, DATABASE_URL: REDACTED });
    expect(shown.hypothesis).toBe(`uses the token ${REDACTED}`);
    expect(shown.repo).toBe(`https://deploy:${REDACTED}@git.example.com/r.git`);
    expect(shown.command).toEqual(['python3', 'train.py', '--token', REDACTED, '--lr', '0.1']);
    const text = JSON.stringify(shown);
    for (const value of ['sk-abcdefgh12345', 'hf_request_secret', 'dbpass99', 'pw12345', 'literal-token-1'])
      expect(text).not.toContain(value);
    expect(publicRequest(shown)).toEqual(shown);
  });

  it('keeps a keyed digest of each secret where the caller holds the key', () => {
    const recorded = publicRequest(request, (value) => `digest-of-${value.length}`);
    expect(recorded.secrets).toEqual({ API_TOKEN: 'hmac-sha256:digest-of-24' });
    expect(publicRequest(recorded)).toEqual(recorded);
  });

  it('knows the values to scrub: secrets and secret-looking variables', () => {
    expect(runSecretValues(request).sort()).toEqual(
      ['hf_request_secret', 'postgres://u:dbpass99@h/db', 'sk-abcdefgh12345-sk-tail'].sort(),
    );
    expect(runSecretValues(publicRequest(request))).toEqual([]);
  });
});

describe('the recorded environment', () => {
  it.each([
    ['CUDA_HOME', true],
    ['NCCL_DEBUG', true],
    ['PYTORCH_CUDA_ALLOC_CONF', true],
    ['PYTHONPATH', true],
    ['UV_CACHE_DIR', true],
    ['VIRTUAL_ENV', true],
    ['CONDA_PREFIX', true],
    ['OMP_NUM_THREADS', true],
    ['HF_HOME', true],
    ['LANG', true],
    ['LC_ALL', true],
    ['PATH', true],
    ['HOME', false],
    ['SSH_AUTH_SOCK', false],
    ['AWS_SECRET_ACCESS_KEY', false],
    ['GITHUB_ACTIONS', false],
    ['USER', false],
  ])('keeps the worker variable %s: %s', (name, kept) => {
    expect(isRecordedWorkerVariable(name)).toBe(kept);
  });

  it("keeps allowlisted worker variables and the request's own, secrets redacted by name and by value", () => {
    const worker = {
      PATH: '/usr/bin',
      HOME: '/root',
      HF_TOKEN: 'hf_worker_secret',
      HF_HOME: '/data/tok-abcdefgh12345-tail',
      AWS_SECRET_ACCESS_KEY: 'aws-secret',
      UV_INDEX_URL: 'https://u:pw@index/simple',
    };
    const request = {
      env: { LR: '0.1', DB_PASSWORD: 'pw-1234', MLFLOW_TRACKING_URI: 'http://u:pw@mlflow' },
      secrets: { API_TOKEN: 'tok-abcdefgh12345-tail' },
    };
    expect(recordedVariables(worker, request, runSecretValues(request))).toEqual({
      API_TOKEN: SECRET_MARKER,
      DB_PASSWORD: REDACTED,
      HF_HOME: `/data/${REDACTED}`,
      HF_TOKEN: REDACTED,
      LR: '0.1',
      MLFLOW_TRACKING_URI: REDACTED,
      PATH: '/usr/bin',
      UV_INDEX_URL: REDACTED,
    });
  });
});

describe('loader and interpreter hijack variables', () => {
  it.each([
    ['LD_PRELOAD', true],
    ['LD_AUDIT', true],
    ['LD_LIBRARY_PATH', true],
    ['DYLD_INSERT_LIBRARIES', true],
    ['GCONV_PATH', true],
    ['NODE_OPTIONS', true],
    ['PYTHONPATH', true],
    ['PYTHONSTARTUP', true],
    ['PYTHONHOME', true],
    ['BASH_ENV', true],
    ['PATH', false],
    ['PYTHONUNBUFFERED', false],
    ['CUDA_VISIBLE_DEVICES', false],
    ['OMP_NUM_THREADS', false],
  ])('%s is a hijack variable: %s', (name, hijack) => {
    expect(hijackReason(name) !== null).toBe(hijack);
  });

  it('refuses them by name unless the tag allows them, saying how to allow them', () => {
    const refusal = hijackRefusal('mar11', ['LR', 'LD_PRELOAD', 'NODE_OPTIONS']);
    expect(refusal).toContain('LD_PRELOAD, NODE_OPTIONS refused');
    expect(refusal).toContain('LD_PRELOAD makes the dynamic loader');
    expect(refusal).toContain('expctl tag create mar11 --allow-env LD_PRELOAD --allow-env NODE_OPTIONS');
    expect(hijackRefusal('mar11', ['LD_PRELOAD', 'NODE_OPTIONS'], ['LD_PRELOAD'])).toContain('NODE_OPTIONS refused');
    expect(hijackRefusal('mar11', ['LD_PRELOAD'], ['LD_PRELOAD'])).toBeNull();
    expect(hijackRefusal('mar11', ['LR', 'PATH'])).toBeNull();
  });
});
