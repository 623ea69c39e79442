import type { TerminalStatus, TrainingOutcome } from './experiment.js';

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

function lastLine(logTail: string): string | null {
  const line = logTail
    .split(/[\r\n]+/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .at(-1);
  return line === undefined ? null : line.slice(0, 160);
}

/** Exit 137 is how a shell or `uv run` reports a child killed by SIGKILL. */
const SIGKILL_EXIT = 137;

/**
 * The one classification rule for a finished run. The first rule that matches decides:
 *
 * 1. canceled: expctl killed the process group because the experiment was canceled.
 * 2. completed: exit 0 and a `---` block with a numeric tag metric, whatever the log says
 *    (a caught OOM in a batch-size probe is fine).
 * 3. timed_out: expctl killed it at the kill limit (phase training) or the setup limit (phase setup).
 * 4. command_failed: environment setup failed (phase setup).
 * 5. command_failed: the run's supervisor was killed from inside the run.
 * 6. oom: a non-zero exit or a kill, plus evidence: CUDA/torch OOM text or the kernel's oom-kill
 *    text in the log tail, or SIGKILL (exit 137) with OOM kills counted by the run's cgroup.
 *    OOM text after a clean exit is never consulted.
 * 7. command_failed: everything else, including a SIGKILL expctl did not send without OOM
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
  const last = lastLine(outcome.logTail);
  const lastText = last ? `; last line: ${last}` : '';
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
  // The exit code is the evidence here; the log tail is in the record (`expctl show`, `expctl logs`).
  if (outcome.exitCode !== 0) return failed(`training exited with ${how}`);
  const why = outcome.metrics ? `its --- block has no numeric "${metricName}"` : 'it printed no --- metric block';
  return failed(`training exited 0 but ${why}`);
}
