import path from 'node:path';
import type crypto from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import {
  bundleWorkflowCode,
  NativeConnection,
  Runtime,
  Worker,
  type State,
  type WorkerInterceptors,
  type WorkflowBundleOption,
} from '@temporalio/worker';
import { createAuthorizationActivities } from '../activities/authorization.js';
import { createRefusedMessageActivities } from '../activities/refused-messages.js';
import { createLeaseHolderActivities } from '../activities/lease-holders.js';
import { createPoolSettingsActivities } from '../activities/pool-settings.js';
import { superviseThePool } from '../client/pool-supervisor.js';
import { auditingTerminalRecords, createOutsideChangeActivities } from '../activities/outside-changes.js';
import { workflowWorkerDataConverter } from '../security/codec.js';
import { createControlActivities } from '../activities/control.js';
import { createPromotionActivities } from '../activities/promotion.js';
import { createStoredArtifactCheckActivities } from '../activities/artifact-check.js';
import { createDatasetActivities } from '../activities/datasets.js';
import { Catalog } from '../catalog/catalog.js';
import { createCatalogActivities } from '../activities/catalog.js';
import { createStoreActivities } from '../activities/store.js';
import { deriveKey } from '../security/keyring.js';
import { CONTROL_TASK_QUEUE, POOL_TASK_QUEUE, TAG_TASK_QUEUE } from '../shared/constants.js';
import { dataDir, poolStallRepairMs } from '../shared/settings.js';
import { openStore } from '../store/open.js';
import type { FleetStore } from '../store/store.js';

// index.ts from the sources, index.js from the compiled CLI (dist/): the bundler reads either.
export const WORKFLOWS_PATH = new URL(`../workflows/index${path.extname(import.meta.url)}`, import.meta.url).pathname;
/** Bundled with every workflow: the guard that drops messages whose payloads the codec refuses. */
export const WORKFLOW_INTERCEPTOR_MODULES = [
  new URL(`../workflows/refused-messages${path.extname(import.meta.url)}`, import.meta.url).pathname,
];

export interface OrchestratorOptions {
  connection: NativeConnection;
  namespace: string;
  client: Client;
  /** Payload encryption: connection.ts `dataConverter(env)`, the same as the client's. */
  dataConverter: DataConverter;
  /** The catalog: a SQLite file or a PostgreSQL URL (settings.ts catalogLocation). */
  catalog: string;
  /** The issuer's public key every signed request is verified against. */
  issuer: crypto.KeyObject;
  /** A prebuilt bundle (tests share one); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkflowBundleOption;
  /**
   * The key of the record's secret digests (see ControlDeps). Default: derived from the payload
   * keyring's current key, so digests compare across restarts (not across a key rotation).
   */
  secretHashKey?: Buffer;
  /** The dataset store (default: settings.ts dataDir(), EXPCTL_DATA_DIR or <stateDir>/data). */
  dataDir?: string;
  /** The control worker's interceptors (observability, fault injection in tests). */
  interceptors?: WorkerInterceptors;
  /** How often it looks for a pool that is gone, to start it again (pool-supervisor.ts; default 5 s). */
  poolCheckMs?: number;
  /**
   * How long the pool's workflow task may keep failing before it repairs the pool itself; null:
   * never (default: settings.ts poolStallRepairMs, EXPCTL_POOL_STALL_REPAIR_SECONDS).
   */
  poolStallRepairMs?: number | null;
  /** Where it tells its operator what it did on its own (default: stderr). */
  log?: (line: string) => void;
  /** The fleet store (default: EXPCTL_STORE, see store/location.ts): promotion checks and retention read it. */
  store?: FleetStore;
}

/** The orchestrator's two workers, run and stopped as one. */
export interface OrchestratorWorker {
  run(): Promise<void>;
  shutdown(): void;
  getState(): State;
}

/**
 * The control worker (every workflow but the pool, and the activities that write state and talk to
 * other workflows) and the pool's worker. The pool has a queue of its own so that its tasks (every
 * lease, every grant) never wait behind a burst of experiments' tasks on the control queue.
 */
export async function createOrchestratorWorker(options: OrchestratorOptions): Promise<OrchestratorWorker> {
  const catalog = await Catalog.open(options.catalog);
  // Promotion's integrity check and shipped logs read it; retention collects it.
  const store = options.store ?? (await openStore());
  const datasets = createDatasetActivities({ catalog, dataDir: options.dataDir ?? dataDir() });
  // Bundled once for both workers; the bundler reports through the runtime's logger, as a worker would.
  const workflowBundle =
    options.workflowBundle ??
    (await bundleWorkflowCode({
      workflowsPath: WORKFLOWS_PATH,
      workflowInterceptorModules: WORKFLOW_INTERCEPTOR_MODULES,
      logger: Runtime.instance().logger,
    }));
  const common = {
    connection: options.connection,
    namespace: options.namespace,
    // A message the codec refuses reaches a workflow as a placeholder it drops, never as a failed task.
    dataConverter: workflowWorkerDataConverter(options.dataConverter),
    workflowBundle,
  };
  const codecs = options.dataConverter.payloadCodecs ?? [];
  const outside = createOutsideChangeActivities({ client: options.client, catalog, codecs });
  const controlActivities = createControlActivities({
    client: options.client,
    catalog,
    secretHashKey: options.secretHashKey ?? (await deriveKey('secret-hash')).key,
    store,
    // A run's terminal record also audits what was done to it from outside expctl.
    auditTerminal: (record) => auditingTerminalRecords(record, outside),
  });
  const control = await Worker.create({
    ...common,
    taskQueue: CONTROL_TASK_QUEUE,
    ...(options.interceptors ? { interceptors: options.interceptors } : {}),
    activities: {
      ...controlActivities,
      ...createCatalogActivities({ catalog }),
      ...createStoreActivities({ store, catalog }),
      ...createAuthorizationActivities({ issuer: options.issuer, catalog }),
      ...createLeaseHolderActivities({ client: options.client, catalog }),
      ...createPoolSettingsActivities({ catalog }),
      ...createRefusedMessageActivities({
        client: options.client,
        catalog,
        codecs: options.dataConverter.payloadCodecs ?? [],
      }),
      ...datasets,
      ...createStoredArtifactCheckActivities({ store }),
      ...createPromotionActivities({
        catalog,
        raiseAlert: (alert) => datasets.raiseAlert({ kind: 'promotion_blocked', ...alert }),
      }),
    },
  });
  // One workflow runs here: a few task slots are plenty, and its queries are answered here too.
  const pool = await Worker.create({ ...common, taskQueue: POOL_TASK_QUEUE, maxConcurrentWorkflowTaskExecutions: 4 });
  // Tags' tasks on slots of their own: a run's control step that waits on its tag never waits for them.
  const tags = await Worker.create({ ...common, taskQueue: TAG_TASK_QUEUE });
  const workers = [control, pool, tags];
  const shutdown = () => {
    for (const worker of workers) if (worker.getState() === 'RUNNING') worker.shutdown();
  };
  return {
    async run() {
      const runs = workers.map((worker) => worker.run());
      // A pool ended by hand (or failed) is started again while the orchestrator runs.
      const supervisor = superviseThePool({
        client: options.client,
        log: options.log ?? ((line) => console.error(line)),
        ...(options.poolCheckMs !== undefined ? { everyMs: options.poolCheckMs } : {}),
        dataConverter: options.dataConverter,
        stallRepairMs: options.poolStallRepairMs === undefined ? poolStallRepairMs() : options.poolStallRepairMs,
      });
      try {
        await Promise.all(runs);
      } catch (error) {
        // One failed: the other stops too, so the orchestrator is restarted whole.
        shutdown();
        await Promise.allSettled(runs);
        throw error;
      } finally {
        supervisor.stop();
      }
    },
    shutdown,
    getState: () => control.getState(),
  };
}
