import type { TerminalStatus, TrainingOutcome } from './experiment.js';
import { scrubText } from './redact.js';
import type { GpuFailure } from './telemetry.js';

/** The terminal state of a finished training run, why (one sentence, with the evidence), and its metric. */
export interface RunClassification {
  status: TerminalStatus;
  reason: string;
  metric: number | null;
}

/**
 * Out-of-memory evidence in a log: CUDA/torch allocator errors and the kernel's OOM-killer text.
 * Deliberately narrow: a bare "out of memory" elsewhere (a dataloader message, a comment) is not proof.
 */
const OOM_PATTERNS: readonly RegExp[] = [
  /CUDA out of memory/i,
  /torch\.(?:cuda\.)?OutOfMemoryError/,
  /CUBLAS_STATUS_ALLOC_FAILED/,
  /Out of memory: Kill(?:ed)? process/i,
  /Killed process \d+ .*out of memory/i,
  /\boom-kill(?:er)?\b/i,
];

/** The first log line that proves an out-of-memory failure, trimmed; null when there is none. */
export function oomEvidence(logTail: string): string | null {
  for (const line of logTail.split(/[\r\n]+/)) {
    if (OOM_PATTERNS.some((pattern) => pattern.test(line))) return line.trim().slice(0, 160);
  }
  return null;
}

export function looksLikeOom(logTail: string): boolean {
  return oomEvidence(logTail) !== null;
}

/** The longest log line a reason quotes. */
const QUOTED_LINE_CHARS = 200;
/**
 * Terminal escape sequences (CSI such as colours, OSC such as titles), dropped whole from a quoted
 * line; also CSI and OSC whose ESC the worker's log follower already made U+FFFD (`�[31m`).
 */
const ESCAPE_SEQUENCE =
  /\u001b(?:\[[0-?]*[ -/]*[@-~]|\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|[@-Z\\-_])|\uFFFD(?:\[[0-?]*[ -/]*[@-~]|\][^\u0007\uFFFD]*\uFFFD?)/g;
/** Any other character that can steer a terminal: C0, DEL, C1, bidi controls and line separators. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/**
 * The last line of a Python traceback (`ValueError: …`, `torch.cuda.OutOfMemoryError: …`, a bare
 * `KeyboardInterrupt`): a dotted name ending in Error, Exception, Exit, Interrupt or Failure.
 */
const EXCEPTION_LINE = /^(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure)(?::\s.*)?$/;
/** Other tools' error lines: `error: …`, `FATAL: …`, `panic: …`, `Segmentation fault (core dumped)`. */
const ERROR_WORDS = /\b(?:error|fatal|panic|exception|segmentation fault|core dumped)\b/i;

/**
 * A log line as a reason may quote it: scrubbed of credential-shaped text (a log tail is scrubbed of
 * the run's own secret values already), escape sequences dropped, other controls shown as `\xNN` or `\uNNNN`,
 * trimmed and cut, so the reason is safe in a record, a terminal and a one-line JSON field.
 */
export function quotableLine(line: string): string {
  const plain = scrubText(line.replace(ESCAPE_SEQUENCE, '')).replace(CONTROL, (char) => {
    const code = char.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
  const trimmed = plain.trim();
  return trimmed.length > QUOTED_LINE_CHARS ? `${trimmed.slice(0, QUOTED_LINE_CHARS - 1)}…` : trimmed;
}

/**
 * The line of a failed run's log that says what went wrong: the last exception line of a
 * traceback, else the last line with an error word, else the last line; null for an empty log.
 * Quotable (quotableLine); `error` says whether it was recognised as an error line.
 */
export function lastErrorLine(logTail: string): { line: string; error: boolean } | null {
  const lines = logTail
    .replace(ESCAPE_SEQUENCE, '')
    .split(/[\r\n]+/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const last = (pattern: RegExp) => [...lines].reverse().find((l) => pattern.test(l));
  const worded = last(EXCEPTION_LINE) ?? last(ERROR_WORDS);
  const line = worded ?? lines.at(-1);
  return line === undefined ? null : { line: quotableLine(line), error: worded !== undefined };
}

/** `; last error line: …` (or `; last line: …` when none looks like an error), or nothing. */
function logEvidence(logTail: string): string {
  const found = lastErrorLine(logTail);
  if (!found) return '';
  return `; ${found.error ? 'last error line' : 'last line'}: ${found.line}`;
}

/** Exit 137 is how a shell or `uv run` reports a child killed by SIGKILL. */
const SIGKILL_EXIT = 137;

/**
 * The one classification rule for a finished run. The first rule that matches decides:
 *
 * 1. canceled: expctl killed the process group because the experiment was canceled.
 * 2. gpu_failed: a GPU of the run failed while it trained and the worker stopped the run; what the
 *    process printed after that is not trusted, so this wins over a metric.
 * 3. completed: exit 0 and a `---` block with a numeric tag metric, whatever the log says
 *    (a caught OOM in a batch-size probe is fine).
 * 4. timed_out: expctl killed it at the kill limit (phase training) or the setup limit (phase setup).
 * 5. command_failed: environment setup failed (phase setup).
 * 6. command_failed: the run's supervisor was killed from inside the run.
 * 7. oom: a non-zero exit or a kill, plus evidence: CUDA/torch OOM text or the kernel's oom-kill
 *    text in the log tail, or SIGKILL (exit 137) with OOM kills counted by the run's cgroup.
 *    OOM text after a clean exit is never consulted.
 * 8. command_failed: everything else, including a SIGKILL expctl did not send without OOM
 *    evidence, and exit 0 without a complete metric block.
 */
export function classifyTraining(outcome: TrainingOutcome, metricName: string): RunClassification {
  const how = outcome.signal ? `signal ${outcome.signal}` : `exit code ${outcome.exitCode}`;
  const failed = (reason: string): RunClassification => ({ status: 'command_failed', reason, metric: null });
  if (outcome.canceled) {
    return {
      status: 'canceled',
      reason: `canceled by an operator; the process group was killed (${how})`,
      metric: null,
    };
  }
  if (outcome.gpuFailure) return { status: 'gpu_failed', reason: gpuFailureReason(outcome.gpuFailure), metric: null };
  const value = outcome.metrics?.[metricName];
  const cleanExit = outcome.exitCode === 0 && outcome.signal === null;
  if (outcome.phase === 'training' && cleanExit && typeof value === 'number') {
    return { status: 'completed', reason: `training finished; ${metricName} = ${value}`, metric: value };
  }
  if (outcome.timedOut) {
    const reason =
      outcome.phase === 'setup'
        ? `environment setup exceeded its setup limit and was killed (${how})`
        : `training exceeded its kill limit (--timeout, counted from the training process's start) and was killed (${how})`;
    return { status: 'timed_out', reason, metric: null };
  }
  const lastText = logEvidence(outcome.logTail);
  if (outcome.phase === 'setup') return failed(`environment setup failed with ${how}${lastText}`);
  if (outcome.supervisorKilled) {
    return failed(`the run's supervisor was killed from inside the run (${how}), so the training process was lost`);
  }
  const killedBySigkill = outcome.signal === 'SIGKILL' || outcome.exitCode === SIGKILL_EXIT;
  if (!cleanExit) {
    const text = oomEvidence(outcome.logTail);
    if (text)
      return {
        status: 'oom',
        reason: `ran out of memory (${how}): ${text}; not retried, a retry would repeat it`,
        metric: null,
      };
    if (killedBySigkill && (outcome.oomKills ?? 0) > 0) {
      return {
        status: 'oom',
        reason: `killed by SIGKILL (${how}) with ${outcome.oomKills} OOM kill(s) counted by the run's cgroup; not retried`,
        metric: null,
      };
    }
  }
  if (killedBySigkill) {
    return failed(
      `killed by SIGKILL that expctl did not send (${how}), with no evidence of an out-of-memory kill${lastText}`,
    );
  }
  if (outcome.signal) return failed(`training was killed by ${outcome.signal}, not sent by expctl${lastText}`);
  // The exit code and the line that says why; the whole tail is in the record (`show`, `logs`).
  if (outcome.exitCode !== 0) return failed(`training exited with ${how}${lastText}`);
  const why = outcome.metrics ? `its --- block has no numeric "${metricName}"` : 'it printed no --- metric block';
  return failed(`training exited 0 but ${why}`);
}

/** Names the GPU that failed (index, slot, uuid) and what showed it, for a gpu_failed run's reason. */
export function gpuFailureReason(failure: GpuFailure): string {
  const gpu = `GPU ${failure.index} (${quotableLine(failure.slotId)}, ${quotableLine(failure.uuid)})`;
  return (
    `${gpu} failed while the run trained: ${quotableLine(failure.evidence)}; the run was stopped and that GPU ` +
    `drained; not the code's fault: expctl retry ID --resume runs it again on a healthy GPU`
  );
}
