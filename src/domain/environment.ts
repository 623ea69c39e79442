import { isSecretVariable, REDACTED, scrubText, SECRET_MARKER } from './redact.js';

/**
 * The training process's environment: what the record keeps of it, and which request variables
 * are refused. Pure: used by the worker, the orchestrator's tag check, the client and tests.
 */

/** Environment variable names (`--env`, `--secret`, `tag create --allow-env`). */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const ENV_NAME_TEXT = 'an environment variable name: letters, digits and "_", not starting with a digit';

/**
 * Variables of the worker's own environment the record keeps: those that shape what a training run
 * computes or how fast (CUDA, NCCL, PyTorch, Python and uv, conda and virtualenvs, thread pools,
 * Hugging Face, locale, PATH). Everything else the worker has (HOME, SSH_*, cloud credentials, CI
 * variables, ...) stays out. Kept values are still redacted by name and scrubbed by value.
 */
const RECORDED_PREFIXES = [
  'CUDA_',
  'CUBLAS_',
  'CUDNN_',
  'NCCL_',
  'NVIDIA_',
  'TORCH_',
  'TORCHINDUCTOR_',
  'PYTORCH_',
  'TRITON_',
  'XLA_',
  'JAX_',
  'PYTHON',
  'UV_',
  'CONDA_',
  'OMP_',
  'MKL_',
  'OPENBLAS_',
  'HF_',
  'TRANSFORMERS_',
  'WANDB_',
  'LC_',
  'EXPCTL_',
];
const RECORDED_NAMES = new Set([
  'PATH',
  'LD_LIBRARY_PATH',
  'VIRTUAL_ENV',
  'LANG',
  'LANGUAGE',
  'TZ',
  'TOKENIZERS_PARALLELISM',
]);

export function isRecordedWorkerVariable(name: string): boolean {
  return RECORDED_NAMES.has(name) || RECORDED_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/**
 * The `variables` of a run's environment record: the worker's allowlisted variables, then the
 * request's `--env` variables (all of them), then its `--secret` names as `[secret]`. Secret-looking
 * values are `[redacted]`; every other value is scrubbed of the run's secret values.
 */
export function recordedVariables(
  worker: Record<string, string | undefined>,
  request: { env: Record<string, string>; secrets?: Record<string, string> },
  secretValues: readonly string[],
): Record<string, string> {
  const kept: Record<string, string> = {};
  const keep = (name: string, value: string) =>
    (kept[name] = isSecretVariable(name, value) ? REDACTED : scrubText(value, secretValues));
  for (const [name, value] of Object.entries(worker))
    if (value !== undefined && isRecordedWorkerVariable(name)) keep(name, value);
  for (const [name, value] of Object.entries(request.env)) keep(name, value);
  for (const name of Object.keys(request.secrets ?? {})) kept[name] = SECRET_MARKER;
  return Object.fromEntries(Object.entries(kept).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Variables that make the dynamic loader or an interpreter run code other than the command's: a
 * request may set them only where its tag's policy allows them by name (`tag create --allow-env`).
 * Any `LD_*` (glibc's loader: LD_PRELOAD, LD_AUDIT, LD_LIBRARY_PATH, ...) and `DYLD_*` (macOS), plus
 * the names below. They reach the training process only, never expctl's supervisor, but the
 * training command is often a tool of the host (`uv`, `unshare`, a setup step), not the script.
 */
const HIJACK_NAMES: Record<string, string> = {
  GCONV_PATH: 'makes glibc load other character-set modules',
  GLIBC_TUNABLES: "changes the dynamic loader's behaviour",
  NODE_OPTIONS: 'makes Node.js preload other code (--require, --import)',
  NODE_PATH: 'makes Node.js resolve modules from other directories',
  PYTHONPATH: 'makes Python import modules (sitecustomize, stdlib names) from other directories',
  PYTHONSTARTUP: 'makes Python run another file at startup',
  PYTHONHOME: "replaces Python's standard library",
  PYTHONUSERBASE: 'makes Python load another user site-packages (usercustomize)',
  PYTHONBREAKPOINT: 'makes Python import and call other code on breakpoint()',
  PERL5LIB: 'makes Perl load modules from other directories',
  PERL5OPT: 'makes Perl preload other modules',
  PERLLIB: 'makes Perl load modules from other directories',
  RUBYOPT: 'makes Ruby preload other code',
  RUBYLIB: 'makes Ruby load libraries from other directories',
  BASH_ENV: 'makes every non-interactive bash run another file first',
  ENV: 'makes sh run another file first',
  JAVA_TOOL_OPTIONS: 'makes the JVM load other agents',
  _JAVA_OPTIONS: 'makes the JVM load other agents',
};

/** Why `name` may hijack a process, or null for an ordinary variable. */
export function hijackReason(name: string): string | null {
  if (name.startsWith('LD_')) return 'makes the dynamic loader load or audit other libraries';
  if (name.startsWith('DYLD_')) return "makes macOS's dynamic loader load other libraries";
  return HIJACK_NAMES[name] ?? null;
}

/**
 * The refusal of a request that sets hijack variables its tag's policy does not allow, naming each
 * and how to allow it; null when none is refused. `names`: the request's `--env` and `--secret` names.
 */
export function hijackRefusal(tag: string, names: readonly string[], allowEnv: readonly string[] = []): string | null {
  const refused = [...new Set(names)].filter((name) => hijackReason(name) !== null && !allowEnv.includes(name)).sort();
  if (refused.length === 0) return null;
  const each = refused.map((name) => `${name} ${hijackReason(name)}`).join('; ');
  return (
    `${refused.join(', ')} refused (--env/--secret): loader and interpreter hijack variables need tag ${tag}'s policy to allow them (${each}); ` +
    `allow them by name with \`expctl tag create ${tag} ${refused.map((name) => `--allow-env ${name}`).join(' ')}\``
  );
}
