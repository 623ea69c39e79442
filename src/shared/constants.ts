/**
 * Names every process must agree on: task queues, workflow IDs, search attributes, versions.
 * Pure module: safe to import from workflow code.
 */

/** Control task queue: all workflows and the control activities (catalog, tag state, reports). */
export const CONTROL_TASK_QUEUE = 'expctl-control';

/**
 * Tag workflows' own queue (polled by the orchestrator): a run's control step may wait on its tag
 * (a query, an update) while it holds a control workflow slot, so the tag's task never waits for one.
 */
export const TAG_TASK_QUEUE = 'expctl-tag';

/** The pool workflow's own queue (polled by the orchestrator): leases never wait behind experiments' tasks. */
/**
 * The pool's workflow task timeout (the server's default is 10 s). On a starved orchestrator a
 * pool task can take longer than 10 s; a timed-out task is retried and, with lease updates in it,
 * can leave the pool unable to replay. A crashed orchestrator's task is retried after this long.
 */
export const POOL_WORKFLOW_TASK_TIMEOUT = '30s';

export const POOL_TASK_QUEUE = 'expctl-pool';

/** One task queue per accelerator slot, with exactly one activity slot polling it. */
export function slotTaskQueue(host: string, slotId: string): string {
  return `expctl-gpu-${host}-${slotId}`;
}

/** Per-host queue for validation, log reads and health checks. */
export function hostTaskQueue(host: string): string {
  return `expctl-host-${host}`;
}

/** The pool is one long-lived entity workflow with this ID. */
export const POOL_WORKFLOW_ID = 'expctl-pool';

/** The Temporal CLI release the project provisions (see scripts/install-temporal). */
export const TEMPORAL_CLI_VERSION = '1.5.1';

/** Failure type of a catalog question refused as malformed or past its size bound (never retried). */
export const CATALOG_QUERY_REFUSED = 'catalog_query_refused';

/**
 * Failure type of a train task whose request failed its checks again on the leased host (a path or
 * program that host lacks): the run ends validation_failed, never a crash or an infrastructure retry.
 */
export const REFUSED_ON_HOST = 'refused_on_host';

/**
 * Failure type of a train task refused on its host because its lease's GPUs are not all this host's
 * to give: one is on another host, or another live run of the host holds it (GPUs are exclusive).
 */
export const GPUS_NOT_FREE_ON_HOST = 'gpus_not_free_on_host';

/** Failure type of awaitTraining when the host has nothing of the run: the workflow calls it lost. */
export const RUN_NOT_ON_HOST = 'RunNotOnHost';
