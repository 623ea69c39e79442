/**
 * Default limits of a run, in one place (BRIEF §2, §4). Pure: the request schema, the workflow,
 * the worker and the CLI's help all read them from here.
 */

/** Training time the script enforces itself (autoresearch's TIME_BUDGET), excluding startup and evaluation. */
export const DEFAULT_TIME_BUDGET_SECONDS = 300;

/** program.md: "kill after 10 minutes" for a 5-minute budget, i.e. the kill limit is 2 x the budget. */
export const KILL_LIMIT_FACTOR = 2;

/** Environment setup (venv creation, `uv sync`, a `--setup` command) has a limit of its own. */
export const DEFAULT_SETUP_TIMEOUT_SECONDS = 900;

/** A run whose worker is lost is placed again this often (on a healthy slot) before it ends worker_lost. */
export const DEFAULT_MAX_REPLACEMENTS = 1;

/**
 * The pool's default heartbeat limit: a host silent this long is lost. A re-placed run that no
 * live host can take waits as long (the pool's configured limit) for one to register, then ends
 * worker_lost.
 */
export const DEFAULT_HEARTBEAT_LIMIT_MS = 60_000;

/**
 * How long the pool's workflow task may keep failing before the orchestrator repairs the pool by
 * itself, as `expctl pool repair` would (EXPCTL_POOL_STALL_REPAIR_SECONDS; 0: only by hand). Long
 * enough for one timed-out task to be retried, short enough that a wedged fleet places again soon.
 */
export const DEFAULT_POOL_STALL_REPAIR_SECONDS = 60;

/** What one run may keep of its checkpoints in the fleet store (EXPCTL_CHECKPOINT_QUOTA on the worker changes it). */
export const DEFAULT_CHECKPOINT_QUOTA_BYTES = 20 * 1024 ** 3;

/** A run's checkpoint directory is synced to the fleet store at most this often (and once more at exit). */
export const DEFAULT_CHECKPOINT_SYNC_MS = 5000;

/**
 * Startup and evaluation take about the same time whatever the budget: a short budget still gets
 * this much beyond it before the default kill (a 6 s smoke run on a loaded host is not a hang).
 */
export const MIN_KILL_HEADROOM_SECONDS = 60;

/**
 * The kill limit of a run, counted from the training process's start: `--timeout`, else
 * KILL_LIMIT_FACTOR x the training budget, and at least the budget + MIN_KILL_HEADROOM_SECONDS.
 */
export function killLimitSeconds(request: { timeBudgetSeconds: number; timeoutSeconds?: number | undefined }): number {
  return (
    request.timeoutSeconds ??
    Math.max(KILL_LIMIT_FACTOR * request.timeBudgetSeconds, request.timeBudgetSeconds + MIN_KILL_HEADROOM_SECONDS)
  );
}

/**
 * The longest a run holds its lease once granted: its setup limit, then its kill limit. The pool
 * lets a run backfill reserved GPUs only when this surely ends before the reservation starts.
 */
export function leaseHoldSeconds(request: {
  setupTimeoutSeconds: number;
  timeBudgetSeconds: number;
  timeoutSeconds?: number | undefined;
}): number {
  return request.setupTimeoutSeconds + killLimitSeconds(request);
}

/**
 * Seconds by which a run's reported training time overran its budget, or null when within it. A
 * script stops at a step boundary (autoresearch reports 300.1 for 300), so a little slack is allowed.
 */
export function budgetOverrunSeconds(timeBudgetSeconds: number, reportedTrainingSeconds: number | null): number | null {
  if (reportedTrainingSeconds === null) return null;
  const slack = Math.max(1, 0.02 * timeBudgetSeconds);
  const over = reportedTrainingSeconds - timeBudgetSeconds;
  return over > slack ? Math.round(over * 10) / 10 : null;
}

/*
 * Log sizes, in one place: what a run's log may grow to on its host, and how much of it travels
 * (in an outcome, a page read through the server, an MCP answer).
 */

/** The raw log's default cap: the supervisor keeps its first 2 GiB, then only the last bytes. */
export const DEFAULT_LOG_CAP_BYTES = 2 * 1024 ** 3;
/** What is kept of the output beyond the cap (it holds the `---` block). */
export const DEFAULT_LOG_TAIL_BYTES = 1024 * 1024;
/** The outcome's log tail is capped at this many bytes (UTF-8). */
export const LOG_TAIL_BYTES = 64 * 1024;
/** The most one readLog page returns, whatever the caller asks for (activity results stay small). */
export const READ_LOG_PAGE_BYTES = 256 * 1024;
/**
 * What `expctl logs` prints of a log without `--all`: its last MiB, from a line start. Every byte
 * read passes through the server's history (and its database), so a read is bounded by default.
 */
export const LOGS_DEFAULT_TAIL_BYTES = 1 << 20;
/** The MCP server's log pages (the CLI has no paging flags, only --all): at most what `logs` prints by default. */
export const LOG_PAGE_MAX_BYTES = LOGS_DEFAULT_TAIL_BYTES;
export const LOG_PAGE_DEFAULT_BYTES = 64 * 1024;

/** Events after which a long-lived workflow (pool, tag, dataset) continues as new, well before Temporal's limits. */
export const HISTORY_EVENTS_LIMIT = 2_000;

/** A training task silent this long is taken for lost, once its host too fails to answer for the run. */
export const TRAIN_HEARTBEAT_TIMEOUT_SECONDS = 10;

/** After a training silence, how long its host gets to answer for the run before the run is called lost. */
export const HOST_ANSWER_SECONDS = 3;
/** The longer wait when the silence was the server's own: every worker needs time to reconnect. */
export const HOST_RECONNECT_SECONDS = 15;
/** A heartbeat timeout reported this much later than the limit means the server was away, not the worker. */
const LATE_TIMEOUT_SLACK_SECONDS = 5;

/**
 * How long the host of a silent run gets to answer for it. A heartbeat timeout reported on time
 * (about the limit after the worker's last heartbeat) means the worker went quiet: a short wait, so
 * a lost worker is called lost within seconds of the limit, and a restarted one still re-attaches.
 * Reported long after it, the server's timers fired on its return from an outage, when no worker
 * could have heartbeated: the long wait. Without a heartbeat time (older workers), the long wait.
 */
export function hostAnswerSeconds(lastHeartbeatAt: string | undefined, nowMs: number): number {
  const sent = lastHeartbeatAt === undefined ? Number.NaN : Date.parse(lastHeartbeatAt);
  if (Number.isNaN(sent)) return HOST_RECONNECT_SECONDS;
  const silentSeconds = (nowMs - sent) / 1000;
  return silentSeconds <= TRAIN_HEARTBEAT_TIMEOUT_SECONDS + LATE_TIMEOUT_SLACK_SECONDS
    ? HOST_ANSWER_SECONDS
    : HOST_RECONNECT_SECONDS;
}

/*
 * Fencing: at most one attempt of a run trains at any moment. A worker confirms each run's lease
 * every few seconds (its host's heartbeats, or the pool's answer); its run's supervisor stops the run once the last confirmation is
 * older than the fencing time (a worker cut off from the server, frozen, killed, or whose lease was
 * revoked). The workflow re-places a lost run only once that time has surely passed on its host.
 * The trade-off: a shorter time re-places a lost run sooner; a longer one lets a run outlive a
 * longer worker restart or server outage (a run whose worker cannot reach the pool for this long
 * is stopped even if the host is healthy).
 */
export const DEFAULT_FENCING_SECONDS = 60;
/**
 * How often a run waiting for its lease asks the pool again: a grant whose signal was lost, or a
 * pool started again without its queue, is mended by the next ask.
 */
export const LEASE_REQUEST_RENEWAL_MS = 30_000;
/**
 * How often a training run's lease is confirmed: a quarter of the host's fencing time (15 s at the
 * default 60 s), within 1 to 15 s. The run is safe however long the interval, since its supervisor
 * fences it by the time; the interval only has to keep a healthy run confirmed with room for
 * missed answers (three in a row here). A run its train task follows is confirmed by its host's
 * liveness heartbeats the server accepts (host-confirmations.ts); only a run let go, or kept across
 * a worker restart, asks the pool. A query takes one of the pool's turns: at 1,000 GPUs, a check
 * every 5 s from every host (50 queries a second) left the pool no time to place anything.
 * A run terminated from outside expctl does not wait for these checks: its train task's heartbeat
 * finds the workflow gone, and the worker stops it.
 */
export function leaseCheckIntervalMs(fencingSeconds: number = DEFAULT_FENCING_SECONDS): number {
  return Math.min(15_000, Math.max(1000, (fencingSeconds * 1000) / 4));
}
/**
 * How often a host heartbeats its liveness: its registered period, or its lease-check interval when
 * that is shorter, since the heartbeats the server accepts confirm the leases of its followed runs.
 */
export function livenessPeriodMs(heartbeatMs: number, fencingSeconds: number = DEFAULT_FENCING_SECONDS): number {
  return Math.min(heartbeatMs, leaseCheckIntervalMs(fencingSeconds));
}
/** The most a check waits for its host's round, which asks the pool about every lease of the host at once. */
export function leaseRoundMs(checkIntervalMs: number): number {
  return checkIntervalMs / 2;
}
/** After the fence's SIGTERM, how long the run's processes get before SIGKILL (the supervisor's own grace). */
export const FENCE_KILL_GRACE_SECONDS = 5;
/** Beyond the host's fencing time and kill grace: its supervisor's check interval and clock skew between hosts. */
export const FENCING_MARGIN_SECONDS = 5;

/** What a host tells the pool of its fencing, and every lease on it carries. */
export interface HostFencing {
  fencingSeconds: number;
  killGraceSeconds: number;
}

/**
 * The earliest moment (epoch ms) a lost attempt's run may be placed again: its host could confirm
 * its lease at the latest at `lastConfirmableAtMs` (when the workflow declared its silence, or the
 * lease ended), and its supervisor stops the run within the fencing time and the kill grace after
 * that. Without the host's figures (an older worker), the defaults.
 */
export function replaceNotBeforeMs(lastConfirmableAtMs: number, fencing: HostFencing | undefined): number {
  const { fencingSeconds, killGraceSeconds } = fencing ?? {
    fencingSeconds: DEFAULT_FENCING_SECONDS,
    killGraceSeconds: FENCE_KILL_GRACE_SECONDS,
  };
  return lastConfirmableAtMs + (fencingSeconds + killGraceSeconds + FENCING_MARGIN_SECONDS) * 1000;
}

/**
 * The budget and kill limit an attempt gets once earlier attempts trained `trainedSeconds`: both
 * count across attempts. The budget keeps at least a second; the kill limit at least the headroom
 * for startup and evaluation (MIN_KILL_HEADROOM_SECONDS), so a resumed run can still report.
 */
export function remainingLimits(
  request: { timeBudgetSeconds: number; timeoutSeconds?: number | undefined },
  trainedSeconds: number | undefined,
): { timeBudgetSeconds: number; timeoutSeconds: number } {
  const trained = Math.max(0, trainedSeconds ?? 0);
  return {
    timeBudgetSeconds: Math.max(1, Math.ceil(request.timeBudgetSeconds - trained)),
    timeoutSeconds: Math.max(MIN_KILL_HEADROOM_SECONDS, Math.ceil(killLimitSeconds(request) - trained)),
  };
}
