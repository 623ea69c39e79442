import crypto from 'node:crypto';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { createHostActivities } from '../activities/host.js';
import { createRunStatusActivities } from '../activities/run-status.js';
import { createArtifactCheckActivities } from '../activities/artifact-check.js';
import { createLivenessActivities, type LivenessDeps } from '../activities/liveness.js';
import { createTrainingActivities, type RunWatch } from '../activities/training.js';
import { releaseLeaseAtExit } from '../gpu-worker/lease-release.js';
import { leaseHeldOn, leaseRounds, leasesHeldOn } from '../gpu-worker/lease-rounds.js';
import { acknowledgedHeartbeatOn, HostConfirmations } from '../gpu-worker/host-confirmations.js';
import { DEFAULT_POOL_HEARTBEAT_MS, type Slot } from '../domain/fleet.js';
import { hostTaskQueue } from '../shared/constants.js';
import type { Credential } from '../security/credentials.js';
import { discoverSlots, type DiscoveryOptions } from '../gpu-worker/discover.js';
import { ensureUnsealingKey, type UnsealingKey } from '../security/sealed-secrets.js';
import { experimentOpenOn, type ExperimentOpen } from '../gpu-worker/reconcile.js';
import { InFlightCalls } from '../gpu-worker/in-flight.js';
import { keepRunsAttached, leaseConfirmer, reconcileAtStart } from '../gpu-worker/kept-runs.js';
import {
  DEFAULT_FENCING_SECONDS,
  FENCE_KILL_GRACE_SECONDS,
  leaseCheckIntervalMs,
  livenessPeriodMs,
  leaseRoundMs,
  type HostFencing,
} from '../domain/limits.js';
import {
  hostRegistration,
  liveLeasesOf,
  PoolMembership,
  RegistrationRefusedError,
} from '../gpu-worker/pool-membership.js';
import { claimWorkDir, WorkDirHeldError } from '../gpu-worker/work-dir-claim.js';
import { DeferredCleanup } from '../gpu-worker/deferred-cleanup.js';
import { MasterPorts } from '../gpu-worker/master-ports.js';
import { gpuWorkerHandle, type GpuWorkerHandle } from '../gpu-worker/handle.js';
import { dataDir } from '../shared/settings.js';
import { ensurePrivateDir } from '../security/files.js';
import { openStore } from '../store/open.js';
import { parseCheckpointQuota } from '../domain/checkpoints.js';
import { ConfigurationError } from '../shared/settings.js';
import type { FleetStore } from '../store/store.js';
import { GpuTelemetrySampler } from '../gpu-worker/gpu-telemetry.js';
import { parseTelemetrySeconds } from '../domain/telemetry.js';

export { RegistrationRefusedError, type GpuWorkerHandle };

/** EXPCTL_CHECKPOINT_QUOTA (e.g. 50GiB), read once at the worker's start; a bad value stops it there. */
/** EXPCTL_TELEMETRY_SECONDS: how often the host's GPU sampler asks nvidia-smi while a run trains. */
function telemetrySecondsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  try {
    return parseTelemetrySeconds(env.EXPCTL_TELEMETRY_SECONDS);
  } catch (error) {
    throw new ConfigurationError((error as Error).message);
  }
}

function checkpointQuotaFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const text = env.EXPCTL_CHECKPOINT_QUOTA;
  if (text === undefined || text === '') return undefined;
  try {
    return parseCheckpointQuota(text);
  } catch (error) {
    throw new ConfigurationError((error as Error).message);
  }
}

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
  /**
   * The fencing time: a run whose lease this worker cannot confirm with the pool this long is
   * stopped on this host by its supervisor (default DEFAULT_FENCING_SECONDS). Told to the pool.
   */
  fencingMs?: number;
  /** The worker (or admin) credential the host registers with. */
  credential: Credential;
  /** The fleet store runs' artifacts, checkpoints and logs go to (default: EXPCTL_STORE, see store/location.ts). */
  store?: FleetStore;
  /** How often each run's checkpoint directory is synced to the store (default 5 s). */
  checkpointSyncMs?: number;
  /** What one run may keep of its checkpoints in the store (default: EXPCTL_CHECKPOINT_QUOTA, else 20 GiB). */
  checkpointQuotaBytes?: number;
  /** How long a finished run's artifact uploads retry an unreachable store (default 60 s). */
  artifactUploadMs?: number;
}

/**
 * The GPU worker's composition root. One process per host: a worker per slot queue with exactly
 * one activity slot (no two experiments on one GPU), a host queue for validation, logs and the
 * host's liveness, and a watch on the pool.
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
  const serverCalls = new InFlightCalls();
  const experimentOpen = serverCalls.track(experimentOpenOn(options.client));
  const attach = leaseConfirmer(workDir, leaseHeldOn(options.client));
  const reconciled = await reconcileAtStart(workDir, experimentOpen, log, attach);
  // The key that opens runs' --secret values, made on a host that has none (copy it to every GPU host).
  const sealing = await ensureUnsealingKey();
  if (sealing.created)
    log(`expctl worker: created the worker sealing key ${sealing.created}; every GPU host needs this same file`);
  const discovery = await discoverSlots(options);
  if (discovery.topology?.problem)
    log(`expctl worker: GPU topology unknown (${discovery.topology.problem}); each GPU counts as its own island`);
  const datasetsDir = options.datasetsDir ?? path.join(workDir, 'datasets');
  const hostQueue = hostTaskQueue(options.host);
  const hostRuns: Map<string, RunWatch> = new Map();
  const cleanup = new DeferredCleanup();
  const telemetry = new GpuTelemetrySampler({ intervalSeconds: telemetrySecondsFromEnv(), log });
  const heartbeatMs = options.poolHeartbeatMs ?? DEFAULT_POOL_HEARTBEAT_MS;
  // One per process start: its liveness activities answer for this incarnation only.
  const incarnation = crypto.randomUUID();
  const liveness = new AbortController();
  const livenessMs = livenessPeriodMs(heartbeatMs, hostFencing(options).fencingSeconds);
  const confirmations = new HostConfirmations(livenessMs);
  const acknowledgedHeartbeat = acknowledgedHeartbeatOn(options, livenessMs);
  const workers = await createWorkers(options, {
    log,
    workDir,
    datasetsDir,
    hostQueue,
    slots: discovery.slots,
    hostRuns,
    masterPorts: new MasterPorts(),
    cleanup,
    telemetry,
    unsealingKey: sealing.key,
    store: options.store ?? (await openStore()),
    checkpointQuotaBytes: options.checkpointQuotaBytes ?? checkpointQuotaFromEnv(),
    liveness: {
      host: options.host,
      incarnation,
      heartbeatMs: livenessMs,
      stopping: liveness.signal,
      acknowledged: { heartbeat: acknowledgedHeartbeat, confirmations },
    },
    experimentOpen,
  });
  const membership = new PoolMembership(
    {
      client: options.client,
      credential: options.credential,
      log,
      heartbeatMs,
      liveLeases: () => liveLeasesOf(hostRuns),
      hostConfirmed: () => confirmations.acceptedNow(),
    },
    await hostRegistration({
      host: options.host,
      hostQueue,
      slots: discovery.slots,
      driverVersion: discovery.driverVersion,
      datasetsDir,
      liveRuns: reconciled.kept.map((run) => run.experimentId),
      heartbeatMs,
      fencing: hostFencing(options),
      topology: discovery.topology,
      incarnation,
    }),
  );
  const stopKeeping = keepRunsAttached({
    workDir,
    kept: reconciled.kept,
    experimentOpen,
    watched: (id) => hostRuns.has(id),
    log,
    attach,
  });
  return gpuWorkerHandle({
    host: options.host,
    slots: discovery.slots,
    workers,
    membership,
    cleanup,
    stopKeeping,
    liveness,
    serverCalls,
    releaseClaim,
  });
}

/** This host's fencing, as told to the pool (and carried by every lease on it). */
function hostFencing(options: GpuWorkerOptions): HostFencing {
  return {
    fencingSeconds: (options.fencingMs ?? DEFAULT_FENCING_SECONDS * 1000) / 1000,
    killGraceSeconds: FENCE_KILL_GRACE_SECONDS,
  };
}

/** The host queue's worker and one worker per slot queue, each with the activities it serves. */
async function createWorkers(
  options: GpuWorkerOptions,
  host: {
    workDir: string;
    datasetsDir: string;
    hostQueue: string;
    slots: Slot[];
    log: (line: string) => void;
    hostRuns: Map<string, RunWatch>;
    masterPorts: MasterPorts;
    cleanup: DeferredCleanup;
    telemetry: GpuTelemetrySampler;
    unsealingKey: UnsealingKey;
    store: FleetStore;
    checkpointQuotaBytes?: number;
    liveness: LivenessDeps;
    experimentOpen: ExperimentOpen;
  },
): Promise<Worker[]> {
  const { workDir, datasetsDir } = host;
  const leaseHeld = leaseHeldOn(options.client);
  // One per worker process, shared by its slots: the host's periodic checks go to the pool together.
  const { fencingSeconds } = hostFencing(options);
  const checkIntervalMs = leaseCheckIntervalMs(fencingSeconds);
  const rounds = leaseRounds(leasesHeldOn(options.client), leaseRoundMs(checkIntervalMs));
  const releaseLease = releaseLeaseAtExit(options.client, host.log);
  const base = {
    connection: options.connection,
    namespace: options.namespace,
    dataConverter: options.dataConverter,
    shutdownGraceTime: '15s',
  };
  const workers: Worker[] = [
    await Worker.create({
      ...base,
      taskQueue: host.hostQueue,
      activities: {
        ...createHostActivities({
          host: options.host,
          workDir,
          slots: host.slots,
          datasetsDir,
          credential: options.credential,
          store: host.store,
        }),
        ...createRunStatusActivities({ workDir }),
        ...createArtifactCheckActivities({ workDir, store: host.store }),
        ...createLivenessActivities(host.liveness),
      },
      // Eight for validation, logs and checks, and one for the host's keepHostAlive.
      maxConcurrentActivityTaskExecutions: 9,
      // keepHostAlive's heartbeats reach the server every period (not 0.8 of the limit): a full period of margin.
      maxHeartbeatThrottleInterval: host.liveness.heartbeatMs,
    }),
  ];
  for (const slot of host.slots) {
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
          fencingMs: fencingSeconds * 1000,
          leaseHeld,
          leaseRounds: rounds,
          leaseCheckIntervalMs: checkIntervalMs,
          hostConfirmations: host.liveness.acknowledged?.confirmations,
          acknowledgedHeartbeat: host.liveness.acknowledged?.heartbeat,
          experimentOpen: host.experimentOpen,
          releaseLease,
          hostRuns: host.hostRuns,
          masterPorts: host.masterPorts,
          cleanup: host.cleanup,
          telemetry: host.telemetry,
          hostSlots: host.slots,
          datasets: { datasetsDir, dataDir: options.dataDir ?? dataDir() },
          unsealingKey: host.unsealingKey,
          store: host.store,
          checkpointSyncMs: options.checkpointSyncMs,
          checkpointQuotaBytes: host.checkpointQuotaBytes,
          artifactUploadMs: options.artifactUploadMs,
        }),
        // Two: the slot's next run is taken while the last one, its lease given back at its exit, is
        // still recorded (freeGpus keeps one run per GPU all the same).
        maxConcurrentActivityTaskExecutions: 2,
        // Heartbeats carry progress and bring cancellation back: do not let the SDK hold them for long.
        maxHeartbeatThrottleInterval: '2s',
        defaultHeartbeatThrottleInterval: '2s',
      }),
    );
  }
  return workers;
}
