/**
 * Secrets never reach the operating record, and nothing a user sees shows one. Pure (no node
 * imports): used by the workflows, the activities and the client alike.
 *
 * Two ways a value is known to be secret:
 * - by value: a run's `--secret` values and the values of its secret-looking `--env` variables (and
 *   those of the worker's own environment) are replaced wherever they occur (`scrubText`);
 * - by shape: text is also scrubbed of what looks like a credential whatever its source: passwords
 *   in URLs (`scheme://user:pass@host`), credential query parameters, `Authorization` values,
 *   private key blocks, well-known token formats and `NAME=value` assignments of secret-looking
 *   names (see the tables in test/unit/redact.test.ts).
 */

export const REDACTED = '[redacted]';
/** In a public request: a `--secret` whose value is not kept (the record keeps a keyed digest instead). */
export const SECRET_MARKER = '[secret]';
/** How a recorded secret digest starts (HMAC-SHA256, keyed by the orchestrator; see control.ts). */
export const SECRET_DIGEST_PREFIX = 'hmac-sha256:';
/** How a `--secret` value sealed for the GPU workers starts (src/security/sealed-secrets.ts). */
export const SEALED_SECRET_PREFIX = 'expctl-sealed:v1:';

/** Whether a request's secret value is sealed for the workers (only a GPU worker opens it). */
export function isSealedSecret(value: string): boolean {
  return value.startsWith(SEALED_SECRET_PREFIX);
}

/** What sealing adds to a value's bytes: the ephemeral public key (32), the IV (12) and the GCM tag (16). */
const SEALING_OVERHEAD_BYTES = 32 + 12 + 16;

/**
 * The UTF-8 bytes of a variable's value as the training process receives it: a sealed value is
 * measured by what it opens to, so sealing never pushes a secret over the bounds it met at submit.
 */
export function variableValueBytes(value: string): number {
  if (!isSealedSecret(value)) return new TextEncoder().encode(value).length;
  const encoded = value.slice(value.lastIndexOf(':') + 1).length;
  return Math.max(0, Math.floor((encoded * 3) / 4) - SEALING_OVERHEAD_BYTES);
}

/** Values shorter than this are never scrubbed by value (and `--secret` refuses them). */
export const MIN_SECRET_LENGTH = 4;

/** Name segments (split at "_", "-", "." and camelCase) that mark a variable as secret. */
const SECRET_SEGMENTS = new Set([
  'TOKEN',
  'SECRET',
  'SECRETS',
  'PASSWORD',
  'PASSWD',
  'PASS',
  'PASSPHRASE',
  'PWD',
  'CREDENTIAL',
  'CREDENTIALS',
  'CREDS',
  'AUTH',
  'COOKIE',
  'SESSION',
  'PRIVATE',
  'KEY',
  'APIKEY',
  'DSN',
  'BEARER',
  'JWT',
  'WEBHOOK',
  'SIGNATURE',
  'SALT',
  'SAS',
]);
/** Substrings that mark a name as secret wherever they occur (PGPASSWORD, AUTHTOKEN, MYSECRETKEY). */
const SECRET_SUBSTRINGS = /PASSWORD|PASSWD|SECRET|CREDENTIAL|APIKEY|ACCESSKEY|PRIVATEKEY|AUTHTOKEN|ACCESSTOKEN/;
/** Names that look secret but are not: the working directory, and counts of tokens. */
const NOT_SECRET_NAMES = new Set(['PWD', 'OLDPWD', 'TOKENIZERS_PARALLELISM']);
/** Words strong enough to mark `name: value` in free text (where "key:" or "session:" are ordinary prose). */
const STRONG_SECRET =
  /PASSWORD|PASSWD|PASSPHRASE|SECRET|CREDENTIAL|APIKEY|API_KEY|ACCESS_KEY|PRIVATE_KEY|(^|_)TOKEN($|_)/;

function segments(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toUpperCase()
    .split(/[_.-]+/)
    .filter((s) => s !== '');
}

/** A variable (or key) name that says its value is a secret: HF_TOKEN, DB_PASSWORD, SENTRY_DSN, apiKey. */
export function isSecretName(name: string): boolean {
  const upper = name.toUpperCase();
  if (NOT_SECRET_NAMES.has(upper)) return false;
  return SECRET_SUBSTRINGS.test(upper.replace(/[_.-]/g, '')) || segments(name).some((s) => SECRET_SEGMENTS.has(s));
}

function isStrongSecretName(name: string): boolean {
  return !NOT_SECRET_NAMES.has(name.toUpperCase()) && STRONG_SECRET.test(segments(name).join('_'));
}

/** Query parameters and connection-string keys whose value is a credential. */
const CREDENTIAL_KEYS =
  'password|passwd|pwd|pass|token|access_token|refresh_token|id_token|auth|api[_-]?key|apikey|secret|client_secret|sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential';

/** Well-known token formats, found in any text. */
const TOKEN_SHAPES: RegExp[] = [
  /\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})/g, // GitHub
  /\bglpat-[A-Za-z0-9_-]{20,}/g, // GitLab
  /\bhf_[A-Za-z0-9]{30,}/g, // Hugging Face
  /\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}/g, // OpenAI, Anthropic
  /\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}/g, // Stripe
  /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, // AWS access key id
  /\bxox[abeprs]-[A-Za-z0-9-]{10,}/g, // Slack
  /\bAIza[0-9A-Za-z_-]{35}/g, // Google API key
  /\bnpm_[A-Za-z0-9]{36}/g, // npm
  /\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/g, // JWT
];

const URL_USERINFO = /\b[a-z][a-z0-9+.-]{0,31}:\/\/[^\s/?#@]{1,512}@/i;
const CREDENTIAL_QUERY = new RegExp(String.raw`[?&;](?:${CREDENTIAL_KEYS})=[^&#\s]`, 'i');
const CONNECTION_STRING_SECRET =
  /(?:^|[;\s])(?:password|pwd|accountkey|sharedaccesskey|sharedaccesssignature)\s*=\s*[^;\s]/i;
const PRIVATE_KEY_BLOCK = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

/**
 * A value that carries a credential whatever its variable is called: a URL with user information
 * (`postgres://user:pass@db`, `https://TOKEN@host`), a credential query parameter (`?sig=...`), a
 * connection string with a password or account key, a private key, a well-known token format.
 */
export function carriesCredentials(value: string): boolean {
  return (
    URL_USERINFO.test(value) ||
    CREDENTIAL_QUERY.test(value) ||
    CONNECTION_STRING_SECRET.test(value) ||
    PRIVATE_KEY_BLOCK.test(value) ||
    TOKEN_SHAPES.some((shape) => new RegExp(shape.source).test(value))
  );
}

/** A variable whose value is kept out of the record: by its name, or by what its value carries. */
export function isSecretVariable(name: string, value: string): boolean {
  return isSecretName(name) || carriesCredentials(value);
}

/** Values that are flags or tiny counts, not secrets, even under a secret-looking name (AUTH_DISABLED=true). */
function trivial(value: string): boolean {
  return (
    value.length < MIN_SECRET_LENGTH ||
    /^(true|false|yes|no|on|off|none|null|nil|enabled?|disabled?)$/i.test(value) ||
    value.startsWith('[redacted')
  );
}

/** Environment variables with the values of secret ones replaced, sorted by name. */
export function redactEnv(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env)
      .filter((entry): entry is [string, string] => entry[1] !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => [name, isSecretVariable(name, value) ? REDACTED : value]),
  );
}

/** The values of an environment's secret variables, to scrub from text (flags and tiny values left out). */
export function secretValues(env: Record<string, string | undefined>): string[] {
  return Object.entries(env)
    .filter((entry): entry is [string, string] => entry[1] !== undefined)
    .filter(([name, value]) => isSecretVariable(name, value) && !trivial(value))
    .map(([, value]) => value);
}

/** The `--secret` names of a request whose values are not sealed for the workers (a client that did not seal them). */
export function unsealedSecretNames(request: { secrets?: Record<string, string> }): string[] {
  return Object.entries(request.secrets ?? {})
    .filter(([, value]) => !isSealedSecret(value))
    .map(([name]) => name);
}

/** Why the workflow refuses a request whose `--secret` values arrived unsealed. */
export function unsealedSecretsRefusal(names: readonly string[]): string {
  return (
    `${names.join(', ')} (--secret) arrived unsealed: the payload keyring would open ${names.length === 1 ? 'it' : 'them'} in ` +
    "Temporal's history; submit with `expctl run` (or the client API), which seals secrets for the GPU workers"
  );
}

/**
 * The request fields other than `secrets` that hold one of its `--secret` values as written: they
 * travel as they are, so the sealing would not keep that value from the keyring's holders.
 */
export function fieldsHoldingSecrets(request: {
  hypothesis: string;
  description: string;
  repo: string;
  command: string[];
  setup?: string[] | undefined;
  idempotencyKey?: string | undefined;
  configPath?: string | undefined;
  env: Record<string, string>;
  secrets?: Record<string, string>;
}): string[] {
  const values = Object.values(request.secrets ?? {}).filter((value) => !isSealedSecret(value));
  const holds = (text: string | undefined) => text !== undefined && values.some((value) => text.includes(value));
  const fields: [string, boolean][] = [
    ['the hypothesis', holds(request.hypothesis)],
    ['the description', holds(request.description)],
    ['the repository', holds(request.repo)],
    ['the command', request.command.some(holds)],
    ['the setup', (request.setup ?? []).some(holds)],
    ['the idempotency key', holds(request.idempotencyKey)],
    ['the config path', holds(request.configPath)],
    ...Object.entries(request.env).map(([name, value]): [string, boolean] => [`--env ${name}`, holds(value)]),
  ];
  return fields.filter(([, held]) => held).map(([field]) => field);
}

/**
 * What a request's `secrets` hold: values on the way to the worker (sealed, from a client of this
 * version: no text holds a sealed form), markers or digests once public.
 */
function keptSecret(value: string): boolean {
  return value !== SECRET_MARKER && !value.startsWith(SECRET_DIGEST_PREFIX) && !isSealedSecret(value);
}

/**
 * Every value a run knows to be secret: its `--secret` values and the values of its secret-looking
 * `--env` variables. (The worker adds the secret values of its own environment.)
 */
export function runSecretValues(request: { env?: Record<string, string>; secrets?: Record<string, string> }): string[] {
  return [...Object.values(request.secrets ?? {}).filter(keptSecret), ...secretValues(request.env ?? {})];
}

/**
 * The forms a value can take in text: as given, URL-encoded, JSON-escaped, and (for a multi-line
 * value such as a key file) each substantial line; longest first, so no shorter one cuts a longer.
 */
export function secretForms(values: readonly string[]): string[] {
  const out = new Set<string>();
  for (const value of values) {
    if (value.length < MIN_SECRET_LENGTH) continue;
    out.add(value);
    out.add(encodeURIComponent(value));
    out.add(JSON.stringify(value).slice(1, -1));
    if (/[\r\n]/.test(value)) {
      for (const line of value.split(/\r?\n|\r/)) if (line.trim().length >= 8) out.add(line.trim());
    }
  }
  return [...out].filter((v) => v.length >= MIN_SECRET_LENGTH).sort((a, b) => b.length - a.length);
}

/** Where text was cut, by its reader or by expctl: a secret may be cut there, and only part of it left. */
const CUT_MARKER = /\[… (?:\d+ bytes|earlier output) cut by expctl …\]/g;

/** Replaces parts of secrets left at the edges of cut text: a tail that starts mid-secret, a head that ends mid-secret. */
function scrubEdges(text: string, values: readonly string[]): string {
  const starts = [0];
  const ends = [text.length];
  for (const match of text.matchAll(CUT_MARKER)) {
    ends.push(/\s/.test(text[match.index - 1] ?? '') ? match.index - 1 : match.index);
    const after = match.index + match[0].length;
    starts.push(/\s/.test(text[after] ?? '') ? after + 1 : after);
  }
  const cuts: [number, number][] = [];
  for (const value of values) {
    // Parts shorter than this are left: too short to tell from ordinary text, too short to matter.
    const least = Math.max(3, Math.min(6, Math.ceil(value.length / 2)));
    for (const at of starts) {
      // The longest end of `value` that this text starts with (a whole value is gone already).
      for (let i = 1; i <= value.length - least; i++) {
        if (value[i] === text[at] && text.startsWith(value.slice(i), at)) {
          cuts.push([at, at + value.length - i]);
          break;
        }
      }
    }
    for (const at of ends) {
      // The longest beginning of `value` that this text ends with.
      for (let k = value.length - 1; k >= least; k--) {
        if (value[k - 1] === text[at - 1] && text.slice(at - k, at) === value.slice(0, k)) {
          cuts.push([at - k, at]);
          break;
        }
      }
    }
  }
  if (cuts.length === 0) return text;
  cuts.sort((a, b) => b[0] - a[0]);
  let out = text;
  let limit = Infinity;
  for (const [from, to] of cuts) {
    const end = Math.min(to, limit);
    if (end <= from) continue;
    out = out.slice(0, from) + REDACTED + out.slice(end);
    limit = from;
  }
  return out;
}

// Every pattern is bounded or anchored to a word's or line's start: scrubbing stays linear in the
// text's length (a 256 KiB line of letters must not take quadratic time).
const ASSIGNMENT =
  /(["']?)(?<![A-Za-z0-9_.])([A-Za-z_][A-Za-z0-9_.-]{0,127})\1([ \t]{0,8})([=:])([ \t]{0,8})(["']?)([^\s"',;&)}\]]+)/g;
const FLAG_VALUE = /(?<![A-Za-z0-9-])(--[A-Za-z][A-Za-z0-9-]{0,63})(\s{1,8})(["']?)([^\s"'-][^\s"']*)/g;
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]{0,31}:\/\/[^\s/?#@:]{0,512}):([^\s/?#@]{1,512})@/gi;
const URL_TOKEN_USER = /(\bhttps?:\/\/)([^\s/?#@:]{16,512})@/gi;
const QUERY_CREDENTIAL = new RegExp(String.raw`([?&;](?:${CREDENTIAL_KEYS})=)(?!\[redacted)[^&#;\s"'<>]+`, 'gi');
const AUTHORIZATION = /\b(Bearer|Basic)(\s+)(?!\[redacted)[A-Za-z0-9._~+/=-]{8,}/g;
const PEM_WHOLE = /-----BEGIN [A-Z0-9 ]{0,32}PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]{0,32}PRIVATE KEY-----/g;
const PEM_UNTERMINATED = /-----BEGIN [A-Z0-9 ]{0,32}PRIVATE KEY-----(?:\r?\n(?:[A-Za-z0-9+/=]+|[A-Za-z-]+: [^\n]*)?)*/g;
const PEM_END = /-----END [A-Z0-9 ]{0,32}PRIVATE KEY-----/g;

/** The end of a private key whose beginning was cut off: its base64 lines up to the END line. */
function headlessKeys(text: string): string {
  let out = text;
  for (const match of [...text.matchAll(PEM_END)].reverse()) {
    let from = match.index;
    while (from > 0) {
      const previous = out.lastIndexOf('\n', from - 2);
      if (!/^[A-Za-z0-9+/=]{16,128}\r?$/.test(out.slice(previous + 1, from - 1))) break;
      from = previous + 1;
    }
    if (from < match.index) out = out.slice(0, from) + REDACTED + out.slice(match.index + match[0].length);
  }
  return out;
}

/** What looks like a credential, whatever its source (see the module comment). */
function scrubShapes(text: string): string {
  let out = headlessKeys(text.replace(PEM_WHOLE, REDACTED).replace(PEM_UNTERMINATED, REDACTED))
    .replace(URL_PASSWORD, `$1:${REDACTED}@`)
    .replace(URL_TOKEN_USER, `$1${REDACTED}@`)
    .replace(QUERY_CREDENTIAL, `$1${REDACTED}`)
    .replace(AUTHORIZATION, `$1$2${REDACTED}`);
  for (const shape of TOKEN_SHAPES) out = out.replace(shape, REDACTED);
  out = out.replace(
    ASSIGNMENT,
    (whole, quote: string, name: string, s1: string, op: string, s2: string, vq: string, value: string) => {
      if (trivial(value)) return whole;
      // "key: value" in prose is not an assignment; HF_TOKEN: x, "api_key": "x" and password: x are.
      const secret =
        op === '=' || quote !== '' || /^[A-Z0-9_]+$/.test(name) ? isSecretName(name) : isStrongSecretName(name);
      return secret ? `${quote}${name}${quote}${s1}${op}${s2}${vq}${REDACTED}` : whole;
    },
  );
  return out.replace(FLAG_VALUE, (whole, flag: string, space: string, quote: string, value: string) =>
    isSecretName(flag.slice(2)) && !trivial(value) ? `${flag}${space}${quote}${REDACTED}` : whole,
  );
}

/**
 * The one scrub of stored and shown text: every occurrence of a known secret value (in its
 * encoded forms too, and parts of one left where text was cut) is replaced by `[redacted]`, then
 * everything that looks like a credential (see the module comment).
 */
export function scrubText(text: string, values: readonly string[] = []): string {
  const known = secretForms(values);
  let out = text;
  for (const value of known) if (out.includes(value)) out = out.split(value).join(REDACTED);
  if (known.length > 0) out = scrubEdges(out, known);
  return scrubShapes(out);
}

/**
 * A `---` block with secrets scrubbed from its keys and text values; a number is withheld when it
 * is a numeric secret (or its digits contain one), as a script that prints a numeric secret as a
 * metric would otherwise record it.
 */
export function scrubMetrics(
  metrics: Record<string, number | string> | null,
  values: readonly string[],
): Record<string, number | string> | null {
  if (!metrics) return null;
  const numeric = values.filter((v) => /^-?\d+(\.\d+)?$/.test(v.trim()) && v.trim().length >= MIN_SECRET_LENGTH);
  const out: Record<string, number | string> = {};
  for (const [key, value] of Object.entries(metrics)) {
    const name = scrubText(key, values);
    if (typeof value === 'string') out[name] = scrubText(value, values);
    else
      out[name] = numeric.some((secret) => Number(secret) === value || String(value).includes(secret.trim()))
        ? REDACTED
        : value;
  }
  return out;
}

/** An argv with secret values scrubbed, and the value after a secret-looking flag (`--token VALUE`) withheld. */
function scrubArgv(argv: readonly string[], values: readonly string[]): string[] {
  return argv.map((arg, i) => {
    const previous = argv[i - 1];
    if (previous !== undefined && /^--?[A-Za-z][\w-]*$/.test(previous) && isSecretName(previous.replace(/^-+/, '')))
      return trivial(arg) ? arg : REDACTED;
    return scrubText(arg, values);
  });
}

/** The request fields `publicRequest` reads and writes (a structural type keeps this module free of zod). */
interface RequestLike {
  hypothesis: string;
  description: string;
  repo: string;
  command: string[];
  setup?: string[] | undefined;
  idempotencyKey?: string | undefined;
  env: Record<string, string>;
  secrets?: Record<string, string>;
}

/**
 * The request as anyone may see it — the workflow's state, the catalog, the memo, the idempotency
 * fingerprint, the worker's run files: each `--secret` value replaced by `digest(value)` when the
 * caller holds the key (the catalog), else by `[secret]`; secret-looking `--env` values by
 * `[redacted]`; free text (hypothesis, description, command, repository URL) scrubbed. Applying it
 * again changes nothing.
 */
export function publicRequest<R extends RequestLike>(request: R, digest?: (value: string) => string): R {
  const values = runSecretValues(request);
  const scrub = (text: string) => scrubText(text, values);
  const secrets = Object.fromEntries(
    Object.entries(request.secrets ?? {}).map(([name, value]) => [
      name,
      isSealedSecret(value)
        ? SECRET_MARKER
        : !keptSecret(value)
          ? value
          : digest
            ? `${SECRET_DIGEST_PREFIX}${digest(value)}`
            : SECRET_MARKER,
    ]),
  );
  return {
    ...request,
    hypothesis: scrub(request.hypothesis),
    description: scrub(request.description),
    repo: scrub(request.repo),
    command: scrubArgv(request.command, values),
    ...(request.setup ? { setup: scrubArgv(request.setup, values) } : {}),
    ...(request.idempotencyKey !== undefined ? { idempotencyKey: scrub(request.idempotencyKey) } : {}),
    env: Object.fromEntries(
      Object.entries(request.env).map(([name, value]) => [
        name,
        isSecretVariable(name, value) ? REDACTED : scrub(value),
      ]),
    ),
    secrets,
  };
}
