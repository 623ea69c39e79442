import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createHostActivities } from '../activities/host.js';
import { createRunStatusActivities } from '../activities/run-status.js';
import { createArtifactCheckActivities } from '../activities/artifact-check.js';
import { createTrainingActivities, type RunWatch } from '../activities/training.js';
import { DEFAULT_POOL_HEARTBEAT_MS, type HostRegistration, type Slot } from '../domain/fleet.js';
import { hostTaskQueue, POOL_TASK_QUEUE, POOL_WORKFLOW_ID } from '../shared/constants.js';
import { contentDigest } from '../security/content-digest.js';
import { PERMISSION_DENIED } from '../domain/authorization.js';
import { signRequest, type Credential } from '../security/credentials.js';
import {
  deregisterHostSignal,
  hostRegistrationQuery,
  leaseHeldQuery,
  registerHostSignal,
} from '../workflows/definitions.js';
import { poolWorkflow } from '../workflows/pool.js';
import { discoverSlots, type DiscoveryOptions } from './discover.js';
import { experimentOpenOn, reconcileRuns, settleKeptRuns, touchAttached } from './reconcile.js';
import { detectContainment } from './containment.js';
import { claimWorkDir, WorkDirHeldError } from './work-dir-claim.js';
import { runFiles } from './run-files.js';
import { DeferredCleanup } from './deferred-cleanup.js';
import { processAlive } from '../shared/processes.js';
import { dataDir } from '../shared/settings.js';
import { ensurePrivateDir } from '../security/files.js';
import { softwareVersions } from './software.js';
import { isConnectionError, ServerLink, serverAddressOf } from '../shared/server-link.js';
import { ensureUnsealingKey } from '../security/sealed-secrets.js';

export interface GpuWorkerOptions extends DiscoveryOptions {
  connection: NativeConnection;
  namespace: string;
  client: Client;
  /** Payload encryption: connection.ts `dataConverter(env)`, the same as the client's. */
  dataConverter: DataConverter;
  workDir: string;
  datasetsDir?: string;
  /** The dataset store pinned versions are laid out from (default: EXPCTL_DATA_DIR, see settings.ts). */
  dataDir?: string;
  poolHeartbeatMs?: number;
  trainingHeartbeatMs?: number;
  /** After SIGTERM, how long a training process group gets before SIGKILL. */
  killAfterMs?: number;
  log?: (line: string) => void;
  /** How long a supervisor keeps a run going with no worker attached (default 60 s). */
  orphanGraceMs?: number;
  /** The worker (or admin) credential the host registers with. */
  credential: Credential;
}

/** The pool refused this host: no valid worker credential, or its name is held by another live worker. */
export class RegistrationRefusedError extends Error {
  readonly type = PERMISSION_DENIED;
}

export interface GpuWorkerHandle {
  host: string;
  slots: Slot[];
  /** Resolves when every poller has stopped. */
  run(): Promise<void>;
  /** Resolves once the pool has this host online (after run() started); rejects if the pool refused it. */
  registered(): Promise<void>;
  shutdown(): Promise<void>;
}

/** How often a worker asks whether the experiments of the runs it kept at start are still open. */
const KEPT_RUNS_CHECK_MS = 15_000;

/** The longest a heartbeat to the pool may take before it counts as not reaching the server. */
const HEARTBEAT_DEADLINE_MS = 10_000;

/**
 * One process per host: a worker per slot queue with exactly one activity slot (no two experiments
 * on one GPU), a host queue for validation and logs, and a heartbeat to the pool.
 */
export async function createGpuWorker(options: GpuWorkerOptions): Promise<GpuWorkerHandle> {
  const log = options.log ?? ((line: string) => console.error(line));
  const workDir = path.resolve(options.workDir);
  await ensurePrivateDir(workDir);
  // Before anything is reconciled, registered or killed: a second worker on this directory stops here.
  const releaseClaim = await claimWorkDir(workDir, options.host).catch((error: Error) => {
    throw error instanceof WorkDirHeldError ? new RegistrationRefusedError(error.message) : error;
  });
  try {
    return await startGpuWorker(options, workDir, log, releaseClaim);
  } catch (error) {
    await releaseClaim();
    throw error;
  }
}

async function startGpuWorker(
  options: GpuWorkerOptions,
  workDir: string,
  log: (line: string) => void,
  releaseClaim: () => Promise<void>,
): Promise<GpuWorkerHandle> {
  const experimentOpen = experimentOpenOn(options.client);
  const reconciled = await reconcileRuns(workDir, undefined, experimentOpen);
  for (const orphan of reconciled.stopped)
    log(`expctl worker: stopped what was left of ${orphan.experimentId} (supervisor ${orphan.pid})`);
  const logForgotten = (runs: typeof reconciled.forgotten) => {
    for (const run of runs)
      log(`expctl worker: forgot ${run.experimentId} (supervisor ${run.pid}): ${run.why}; its cgroup is removed`);
  };
  logForgotten(reconciled.forgotten);
  for (const run of reconciled.kept)
    log(`expctl worker: kept ${run.experimentId} (supervisor ${run.pid}) for its experiment to re-attach`);

  // The key that opens runs' --secret values, made on a host that has none (copy it to every GPU host).
  const sealing = await ensureUnsealingKey();
  if (sealing.created)
    log(`expctl worker: created the worker sealing key ${sealing.created}; every GPU host needs this same file`);
  const discovery = await discoverSlots(options);
  const datasetsDir = options.datasetsDir ?? path.join(workDir, 'datasets');
  const host = options.host;
  const hostQueue = hostTaskQueue(host);
  const pool = options.client.workflow.getHandle(POOL_WORKFLOW_ID);
  const leaseHeld = (slotId: string, leaseId: string) => pool.query(leaseHeldQuery, { slotId, leaseId });
  const hostRuns: Map<string, RunWatch> = new Map();
  const cleanup = new DeferredCleanup();
  const base = {
    connection: options.connection,
    namespace: options.namespace,
    dataConverter: options.dataConverter,
    shutdownGraceTime: '15s',
  };
  const workers: Worker[] = [
    await Worker.create({
      ...base,
      taskQueue: hostQueue,
      activities: {
        ...createHostActivities({
          host,
          workDir,
          slots: discovery.slots,
          datasetsDir,
          credential: options.credential,
        }),
        ...createRunStatusActivities({ workDir }),
        ...createArtifactCheckActivities({ workDir }),
      },
      maxConcurrentActivityTaskExecutions: 8,
    }),
  ];
  for (const slot of discovery.slots) {
    workers.push(
      await Worker.create({
        ...base,
        taskQueue: slot.taskQueue,
        activities: createTrainingActivities({
          slot,
          workDir,
          credential: options.credential,
          heartbeatIntervalMs: options.trainingHeartbeatMs,
          killAfterMs: options.killAfterMs,
          orphanGraceMs: options.orphanGraceMs,
          leaseHeld,
          hostRuns,
          cleanup,
          datasets: { datasetsDir, dataDir: options.dataDir ?? dataDir() },
          unsealingKey: sealing.key,
        }),
        maxConcurrentActivityTaskExecutions: 1,
        // Heartbeats carry progress and bring cancellation back: do not let the SDK hold them for long.
        maxHeartbeatThrottleInterval: '2s',
        defaultHeartbeatThrottleInterval: '2s',
      }),
    );
  }

  let content: HostRegistration = {
    host,
    hostQueue,
    slots: discovery.slots,
    driverVersion: discovery.driverVersion,
    datasets: (await fs.readdir(datasetsDir).catch(() => [])).filter((name) => !name.startsWith('.')),
    software: await softwareVersions(),
    registeredAt: Date.now(),
    incarnation: crypto.randomUUID(),
    // The pool keeps these runs' leases across the restart: their experiments re-attach to them.
    liveRuns: reconciled.kept.map((run) => run.experimentId),
    // The pool never declares this host lost before it has missed two of these.
    heartbeatMs: options.poolHeartbeatMs ?? DEFAULT_POOL_HEARTBEAT_MS,
  };
  let digest = contentDigest(content);
  // Signed afresh for every heartbeat: a pool that lost its state can verify it again at any time.
  const registration = (): HostRegistration => ({
    ...content,
    authorization: signRequest(options.credential, { action: 'register_host', target: host, digest }),
  });
  // The heartbeat is the worker's link to the server: its operator hears when that link breaks and heals.
  const serverLink = new ServerLink(`expctl worker ${host}`, serverAddressOf(options.client), log);
  let heartbeat: NodeJS.Timeout | undefined;
  let heartbeatInFlight: Promise<unknown> | undefined;
  // Kept runs stay attached until their experiment adopts them (the adopting activity touches them too);
  // those whose experiment closed meanwhile are forgotten, so none is kept going for nobody.
  let kept = reconciled.kept;
  let settling: Promise<void> | undefined;
  let lastSettled = Date.now();
  const keepAttached = setInterval(() => {
    for (const run of kept) {
      if (processAlive(run.pid)) void touchAttached(runFiles(workDir, run.experimentId).attached);
    }
    if (settling || kept.length === 0 || Date.now() - lastSettled < KEPT_RUNS_CHECK_MS) return;
    settling = (async () => {
      const settled = await settleKeptRuns(workDir, await detectContainment(workDir), kept, experimentOpen, (id) =>
        hostRuns.has(id),
      );
      kept = settled.kept;
      logForgotten(settled.forgotten);
    })()
      .catch((error: Error) => log(`expctl worker: could not check its kept runs: ${error.message}`))
      .finally(() => {
        settling = undefined;
        lastSettled = Date.now();
      });
  }, 2000);
  keepAttached.unref();

  /**
   * Waits until the pool has this incarnation online, or has refused it (fatal). While the pool
   * cannot answer (server or orchestrator away) it keeps asking: heartbeats register it later.
   */
  let stopped = false;
  const accepted = async () => {
    for (let delay = 100; !stopped; delay = Math.min(delay * 2, 2000)) {
      const state = await pool.query(hostRegistrationQuery, host).catch(() => undefined);
      if (state?.online && state.incarnation === content.incarnation) return;
      const refusal = state?.refusal;
      if (refusal && refusal.incarnation === content.incarnation) throw new RegistrationRefusedError(refusal.reason);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  };

  /** Registers this host, starting the pool first where there is none (signal-with-start). */
  const registerWithPool = () =>
    options.client.workflow.signalWithStart(poolWorkflow, {
      workflowId: POOL_WORKFLOW_ID,
      taskQueue: POOL_TASK_QUEUE,
      args: [],
      signal: registerHostSignal,
      signalArgs: [registration()],
    });

  /**
   * The pool is gone (terminated by hand): started again with this host's registration, which
   * now names the leases of the runs it trains, so the new pool holds them again. Every worker
   * does this at its next heartbeat; the first one's start creates it, the others only register.
   */
  const recreatePool = async () => {
    const liveLeases = [...hostRuns].flatMap(([experimentId, watch]) =>
      watch.leaseId && watch.slotId ? [{ experimentId, leaseId: watch.leaseId, slotId: watch.slotId }] : [],
    );
    content = {
      ...content,
      liveRuns: [...new Set([...(content.liveRuns ?? []), ...liveLeases.map((l) => l.experimentId)])],
      liveLeases,
    };
    digest = contentDigest(content);
    log(
      `expctl worker: the pool was gone; started it again with ${host}'s registration and ${liveLeases.length} live lease(s)`,
    );
    await registerWithPool();
  };

  let registration$: Promise<void> | undefined;
  let markRegistered = () => {};
  const started = new Promise<void>((resolve) => (markRegistered = resolve));

  return {
    host,
    slots: discovery.slots,
    async registered() {
      await started;
      await registration$;
    },
    async run() {
      const running = Promise.all(workers.map((worker) => worker.run()));
      // Pollers first, then registration: the pool only hands out slots somebody is polling.
      await registerWithPool();
      // The heartbeat is the registration itself: a pool that declared this host offline (or lost
      // its state) takes it back only through a registration, never through a bare heartbeat.
      // One heartbeat in flight at a time: during a server outage they would pile up, each retrying.
      heartbeat = setInterval(() => {
        if (heartbeatInFlight) return;
        // A deadline: across a cut link a call would otherwise hang, and the operator never hear of it.
        heartbeatInFlight = options.client
          .withDeadline(Date.now() + HEARTBEAT_DEADLINE_MS, () => pool.signal(registerHostSignal, registration()))
          .catch((error: Error) => {
            if (!(error instanceof WorkflowNotFoundError)) throw error;
            return recreatePool();
          })
          .then(
            () => serverLink.reached(),
            (error: Error) => {
              if (isConnectionError(error)) serverLink.failed(error);
              else log(`expctl worker: pool heartbeat failed: ${error.message}`);
            },
          )
          .finally(() => (heartbeatInFlight = undefined));
      }, options.poolHeartbeatMs ?? DEFAULT_POOL_HEARTBEAT_MS);
      // A refused registration stops the worker with the pool's reason.
      let refusal: Error | undefined;
      registration$ = accepted();
      markRegistered();
      void registration$.catch((error: Error) => {
        refusal = error;
        clearInterval(heartbeat);
        for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
      });
      await running;
      // Worktrees of finished runs still being removed: a stopped worker leaves none half-deleted.
      await cleanup.drain();
      await releaseClaim();
      if (refusal) throw refusal;
    },
    async shutdown() {
      stopped = true;
      clearInterval(heartbeat);
      clearInterval(keepAttached);
      await heartbeatInFlight;
      const farewell = { host, incarnation: content.incarnation };
      const authorization = signRequest(options.credential, {
        action: 'register_host',
        target: host,
        digest: contentDigest(farewell),
      });
      await pool.signal(deregisterHostSignal, { ...farewell, authorization }).catch(() => undefined);
      for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
      await releaseClaim();
    },
  };
}
