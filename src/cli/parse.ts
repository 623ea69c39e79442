import fs from 'node:fs';
import { InvalidArgumentError } from 'commander';
import { MIN_SECRET_LENGTH } from '../domain/redact.js';
import { DEFAULT_WAIT_FOR_DATA_SECONDS } from '../domain/dataset-refs.js';
import { ENV_NAME_PATTERN, ENV_NAME_TEXT } from '../domain/environment.js';
import { MAX_GPUS_PER_RUN } from '../domain/bounds.js';
import {
  GPUS_ALL,
  METRIC_NAME_PATTERN,
  METRIC_NAME_TEXT,
  PRIORITY_RANGE,
  TAG_PATTERN,
  TAG_RULE,
} from '../domain/request.js';
import { FlagError, shown, splitCommandLine } from '../shared/command-line.js';
import { safeText } from '../shared/safe-text.js';

export { FlagError, splitCommandLine } from '../shared/command-line.js';

/**
 * Strict parsing of command-line values, before anything is submitted. Pure: unit-tested on its own.
 *
 * Numbers are decimal only: optional "-", digits, optionally "." and more digits ("300", "2.5").
 * Refused: "" and spaces, exponents ("1e3"), hex/octal/binary ("0x10"), "+5", ".5", "5.",
 * NaN, Infinity, units ("5s"). Integers where integers are meant (no fraction at all).
 */

const DECIMAL = /^-?\d+(\.\d+)?$/;
const INTEGER = /^-?\d+$/;

export interface NumberRule {
  integer?: boolean;
  /** Inclusive lower bound. */
  min?: number;
  /** Exclusive lower bound of 0: the value must be greater than zero. */
  positive?: boolean;
  max?: number;
}

export function parseNumber(flag: string, raw: string, rule: NumberRule = {}): number {
  const kind = rule.integer ? 'an integer' : 'a decimal number';
  if (!(rule.integer ? INTEGER : DECIMAL).test(raw)) {
    throw new FlagError(
      `${flag} ${shown(raw)}: expected ${kind} written with digits only, such as ${rule.integer ? '"5"' : '"300" or "2.5"'} (no spaces, sign "+", exponent, hex or unit)`,
    );
  }
  const value = Number(raw);
  if (!Number.isFinite(value) || (rule.integer && !Number.isSafeInteger(value)))
    throw new FlagError(`${flag} ${shown(raw)}: out of range`);
  if (rule.positive && value <= 0) throw new FlagError(`${flag} ${shown(raw)}: must be greater than 0`);
  if (rule.min !== undefined && value < rule.min)
    throw new FlagError(`${flag} ${shown(raw)}: must be at least ${rule.min}`);
  if (rule.max !== undefined && value > rule.max)
    throw new FlagError(`${flag} ${shown(raw)}: must be at most ${rule.max}`);
  return value;
}

/** A commander argParser for a numeric flag given at most once (other commands than `run`). */
export function numberOption(flag: string, rule: NumberRule = {}): (raw: string, previous: unknown) => number {
  return (raw, previous) => {
    if (previous !== undefined) throw new InvalidArgumentError(`${flag} was given more than once; it takes one value`);
    try {
      return parseNumber(flag, raw, rule);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

/** A commander argParser for a text flag given at most once. */
export function singleOption(flag: string): (raw: string, previous: unknown) => string {
  return (raw, previous) => {
    if (previous !== undefined) throw new InvalidArgumentError(`${flag} was given more than once; it takes one value`);
    return raw;
  };
}

/** Collects every occurrence; `run` decides afterwards which flags may repeat, so it can list every problem. */
export function occurrences(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function checkTag(flag: string, raw: string): string {
  if (!TAG_PATTERN.test(raw)) throw new FlagError(`${flag} ${shown(raw)}: ${TAG_RULE}`);
  return raw;
}

export function checkMetricName(flag: string, raw: string): string {
  if (!METRIC_NAME_PATTERN.test(raw)) throw new FlagError(`${flag} ${shown(raw)}: expected ${METRIC_NAME_TEXT}`);
  return raw;
}

/** `--env KEY=VALUE`: the value may contain "=" and be empty; the key may not be empty. */
export function parseEnvPair(raw: string): [string, string] {
  const at = raw.indexOf('=');
  if (at <= 0) throw new FlagError(`--env ${shown(raw)}: --env expects KEY=VALUE`);
  const name = raw.slice(0, at);
  if (!ENV_NAME_PATTERN.test(name)) throw new FlagError(`--env ${shown(name)}: the name must be ${ENV_NAME_TEXT}`);
  return [name, raw.slice(at + 1)];
}

/** Where `--secret` values come from: the submitter's environment and files (tests pass their own). */
export interface SecretSources {
  env: Record<string, string | undefined>;
  readFile(file: string): string;
}

export const PROCESS_SECRET_SOURCES: SecretSources = {
  env: process.env,
  readFile: (file) => fs.readFileSync(file, 'utf8'),
};

/**
 * `--secret NAME` (the value of the submitter's variable NAME) or `--secret NAME=@FILE` (the file's
 * contents, one trailing newline trimmed). A value on the command line itself is refused: it would
 * show in `ps` and the shell's history. No message ever quotes a value.
 */
export function parseSecretFlag(raw: string, sources: SecretSources = PROCESS_SECRET_SOURCES): [string, string] {
  const at = raw.indexOf('=');
  const name = at < 0 ? raw : raw.slice(0, at);
  if (!ENV_NAME_PATTERN.test(name))
    throw new FlagError(
      `--secret: expected NAME or NAME=@FILE, NAME being ${ENV_NAME_TEXT} (what was given is not shown, in case it is a value)`,
    );
  let value: string;
  if (at < 0) {
    value = sources.env[name] ?? '';
    if (value === '')
      throw new FlagError(
        `--secret ${name}: the variable ${name} is ${sources.env[name] === undefined ? 'not set' : 'empty'} in this environment; export it, or pass --secret ${name}=@FILE`,
      );
  } else {
    const spec = raw.slice(at + 1);
    if (!spec.startsWith('@') || spec.length === 1)
      throw new FlagError(
        `--secret ${name}=...: give NAME (the value is read from your environment) or NAME=@FILE; a value on the command line would show in ps and the shell's history`,
      );
    const file = spec.slice(1);
    try {
      value = sources.readFile(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new FlagError(`--secret ${name}=@${safeText(file)}: cannot read the file${code ? ` (${code})` : ''}`);
    }
    value = value.replace(/\r?\n$/, '');
    if (value === '') throw new FlagError(`--secret ${name}=@${safeText(file)}: the file is empty`);
  }
  if (value.length < MIN_SECRET_LENGTH)
    throw new FlagError(
      `--secret ${name}: the value has fewer than ${MIN_SECRET_LENGTH} characters; so short a secret cannot be kept out of logs and metrics`,
    );
  return [name, value];
}

/** Every `--secret` of a command, each once; problems name the flag, never a value. */
export function parseSecretFlags(
  raws: readonly string[],
  sources: SecretSources = PROCESS_SECRET_SOURCES,
): { secrets: Record<string, string>; problems: string[] } {
  const secrets: Record<string, string> = {};
  const problems: string[] = [];
  for (const raw of raws) {
    try {
      const [name, value] = parseSecretFlag(raw, sources);
      if (name in secrets) problems.push(`--secret ${name} was given more than once; give each secret once`);
      secrets[name] = value;
    } catch (error) {
      if (!(error instanceof FlagError)) throw error;
      problems.push(error.message);
    }
  }
  return { secrets, problems };
}

/** What commander hands `run` (every valued flag collected with `occurrences`). */
export interface RawRunOptions {
  tag?: string[];
  hypothesis?: string[];
  category?: string[];
  description?: string[];
  repo?: string[];
  commit?: string[];
  config?: string[];
  dataset?: string[];
  checkpoint?: string[];
  gpuClass?: string[];
  gpuMem?: string[];
  gpus?: string[];
  runtimeTag?: string[];
  timeBudget?: string[];
  timeout?: string[];
  setup?: string[];
  setupTimeout?: string[];
  metric?: string[];
  maximize?: boolean;
  simplification?: boolean;
  idempotencyKey?: string[];
  priority?: string[];
  maxReplacements?: string[];
  env?: string[];
  secret?: string[];
  /** `--wait-for-data [SECONDS]`: true when given without a value. */
  waitForData?: string | boolean;
  /** Gone: replaced by --timeout. Accepted by the parser only to say so. */
  grace?: string[];
  detach?: boolean;
  json?: boolean;
}

/** `run`'s flags, each checked; still to be validated as a whole by the request schema. */
export interface RunFlags {
  tag?: string;
  hypothesis?: string;
  category?: string;
  description?: string;
  repo?: string;
  commit?: string;
  config?: string;
  datasets: string[];
  checkpoint?: string;
  gpuClass?: string;
  gpuMemoryMb?: number;
  /** `--gpus K` or `--gpus all`. */
  gpus?: number | typeof GPUS_ALL;
  runtimeTags: string[];
  timeBudgetSeconds?: number;
  timeoutSeconds?: number;
  setup?: string[];
  setupTimeoutSeconds?: number;
  metric?: string;
  maximize: boolean;
  simplification: boolean;
  idempotencyKey?: string;
  priority: number;
  maxReplacements?: number;
  env: Record<string, string>;
  /** `--secret` values by name (never shown; see parseSecretFlag). */
  secrets: Record<string, string>;
  waitForDataSeconds?: number;
}

/** Flags that may be given many times; every other valued flag of `run` takes one value. */
const REPEATABLE = new Set<keyof RawRunOptions>(['dataset', 'runtimeTag', 'env', 'secret']);

const flagName = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** Checks every flag of `run`; returns all problems at once, each naming its flag. */
export function parseRunFlags(
  raw: RawRunOptions,
  sources: SecretSources = PROCESS_SECRET_SOURCES,
  /** A batch's variants take their commit's subject line when no --hypothesis is given. */
  { hypothesisRequired = true }: { hypothesisRequired?: boolean } = {},
): { flags: RunFlags; problems: string[] } {
  const problems: string[] = [];
  const attempt = <T>(parse: () => T): T | undefined => {
    try {
      return parse();
    } catch (error) {
      if (!(error instanceof FlagError)) throw error;
      problems.push(error.message);
      return undefined;
    }
  };
  for (const [key, value] of Object.entries(raw)) {
    if (Array.isArray(value) && value.length > 1 && !REPEATABLE.has(key as keyof RawRunOptions)) {
      problems.push(
        `${flagName(key)} was given ${value.length} times (${value.map(shown).join(', ')}); it takes one value`,
      );
    }
  }
  for (const [key, what] of [
    ['tag', 'T'],
    ['hypothesis', 'TEXT'],
    ['category', 'C'],
  ] as const) {
    if (key === 'hypothesis' && !hypothesisRequired) continue;
    if (!raw[key]) problems.push(`${flagName(key)} ${what} is required`);
  }
  if (raw.grace)
    problems.push(
      '--grace is gone: the kill limit is --timeout SECONDS, counted from the training process start (default 2 x --time-budget)',
    );
  const one = (key: keyof RawRunOptions): string | undefined => {
    const value = raw[key];
    return Array.isArray(value) ? value[0] : undefined;
  };
  const numberFlag = (key: keyof RawRunOptions, rule: NumberRule) => {
    const value = one(key);
    return value === undefined ? undefined : attempt(() => parseNumber(flagName(key), value, rule));
  };

  const env: Record<string, string> = {};
  for (const pair of raw.env ?? []) {
    const parsed = attempt(() => parseEnvPair(pair));
    if (!parsed) continue;
    if (parsed[0] in env) problems.push(`--env ${parsed[0]} was given more than once; give each variable once`);
    env[parsed[0]] = parsed[1];
  }
  const { secrets, problems: secretProblems } = parseSecretFlags(raw.secret ?? [], sources);
  problems.push(...secretProblems);
  for (const name of Object.keys(secrets).filter((name) => name in env))
    problems.push(`${name} is given both as --env and as --secret; give it once`);
  const tag = one('tag');
  const metric = one('metric');
  const setup = one('setup');
  const gpusFlag = one('gpus');
  const flags: RunFlags = {
    tag: tag === undefined ? undefined : attempt(() => checkTag('--tag', tag)),
    hypothesis: one('hypothesis'),
    category: one('category'),
    description: one('description'),
    repo: one('repo'),
    commit: one('commit'),
    config: one('config'),
    datasets: raw.dataset ?? [],
    checkpoint: one('checkpoint'),
    gpuClass: one('gpuClass'),
    gpuMemoryMb: numberFlag('gpuMem', { integer: true, min: 0 }),
    gpus: gpusFlag === undefined ? undefined : attempt(() => parseGpus(gpusFlag)),
    runtimeTags: raw.runtimeTag ?? [],
    timeBudgetSeconds: numberFlag('timeBudget', { positive: true }),
    timeoutSeconds: numberFlag('timeout', { positive: true }),
    setup: setup === undefined ? undefined : attempt(() => splitCommandLine('--setup', setup)),
    setupTimeoutSeconds: numberFlag('setupTimeout', { positive: true }),
    metric: metric === undefined ? undefined : attempt(() => checkMetricName('--metric', metric)),
    maximize: raw.maximize === true,
    simplification: raw.simplification === true,
    idempotencyKey: one('idempotencyKey'),
    priority: numberFlag('priority', { integer: true, ...PRIORITY_RANGE }) ?? 0,
    maxReplacements: numberFlag('maxReplacements', { integer: true, min: 0 }),
    env,
    secrets,
    waitForDataSeconds:
      raw.waitForData === undefined || raw.waitForData === false
        ? undefined
        : raw.waitForData === true
          ? DEFAULT_WAIT_FOR_DATA_SECONDS
          : attempt(() => parseNumber('--wait-for-data', raw.waitForData as string, { positive: true })),
  };
  return { flags, problems };
}

/** `--gpus`: a count of GPUs held together on one host, or `all` (every GPU of the host it lands on). */
export function parseGpus(raw: string): number | typeof GPUS_ALL {
  if (raw === GPUS_ALL) return GPUS_ALL;
  if (!/^[0-9]+$/.test(raw))
    throw new FlagError(`--gpus ${shown(raw)}: expected a GPU count such as "4", or "all" (every GPU of one host)`);
  return parseNumber('--gpus', raw, { integer: true, min: 1, max: MAX_GPUS_PER_RUN });
}

/** Request fields (as the schema names them) and the `run` flag that sets each. */
const FLAG_OF_FIELD: [RegExp, string][] = [
  [/^tag$/, '--tag'],
  [/^hypothesis$/, '--hypothesis'],
  [/^category$/, '--category'],
  [/^description$/, '--description'],
  [/^command(\.\d+)?$/, 'the command after --'],
  [/^setup(\.\d+)?$/, '--setup'],
  [/^setupTimeoutSeconds$/, '--setup-timeout'],
  [/^repo$/, '--repo'],
  [/^configPath$/, '--config'],
  [/^datasets(\.\d+)?$/, '--dataset'],
  [/^checkpoint$/, '--checkpoint'],
  [/^requirements\.acceleratorClass$/, '--gpu-class'],
  [/^requirements\.gpuMemoryMb$/, '--gpu-mem'],
  [/^requirements\.gpus$/, '--gpus'],
  [/^requirements\.runtimeTags(\.\d+)?$/, '--runtime-tag'],
  [/^timeBudgetSeconds$/, '--time-budget'],
  [/^timeoutSeconds$/, '--timeout'],
  [/^metric(\.name|\.direction)?$/, '--metric'],
  [/^idempotencyKey$/, '--idempotency-key'],
  [/^maxReplacements$/, '--max-replacements'],
  [/^env(\..*)?$/, '--env'],
  [/^secrets(\..*)?$/, '--secret'],
  [/^waitForDataSeconds$/, '--wait-for-data'],
];

/** A schema problem ("datasets.0: must not ...") as the flag that caused it ("--dataset: must not ..."). */
export function problemAsFlag(problem: string): string {
  const at = problem.indexOf(': ');
  if (at < 0) return problem;
  const field = problem.slice(0, at);
  const flag = FLAG_OF_FIELD.find(([pattern]) => pattern.test(field))?.[1];
  if (!flag) return problem;
  const detail = /^(env|secrets)\./.test(field) ? ` ${field.slice(field.indexOf('.') + 1)}` : '';
  return `${flag}${detail}: ${problem.slice(at + 2)}`;
}

/** `batch`'s own flags on top of `run`'s. */
export interface RawBatchOptions extends RawRunOptions {
  base?: string[];
  deadline?: string[];
}

export interface BatchFlags extends RunFlags {
  base?: string;
  deadlineSeconds?: number;
}

/** `batch`'s flags: `run`'s (the hypothesis optional, no --commit), the base and the deadline. */
export function parseBatchFlags(
  raw: RawBatchOptions,
  sources: SecretSources = PROCESS_SECRET_SOURCES,
): { flags: BatchFlags; problems: string[] } {
  const { base, deadline, ...runRaw } = raw;
  const { flags, problems } = parseRunFlags(runRaw, sources, { hypothesisRequired: false });
  if (raw.commit) problems.push('--commit: a batch takes its variants as arguments (COMMIT...), not --commit');
  for (const [flag, values] of [
    ['--base', base],
    ['--deadline', deadline],
  ] as const) {
    if (values && values.length > 1)
      problems.push(`${flag} was given ${values.length} times (${values.map(shown).join(', ')}); it takes one value`);
  }
  let deadlineSeconds: number | undefined;
  if (deadline?.[0] !== undefined) {
    try {
      deadlineSeconds = parseNumber('--deadline', deadline[0], { positive: true });
    } catch (error) {
      if (!(error instanceof FlagError)) throw error;
      problems.push(error.message);
    }
  }
  return { flags: { ...flags, base: base?.[0], deadlineSeconds }, problems };
}
