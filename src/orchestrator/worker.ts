import crypto from 'node:crypto';
import type { Client } from '@temporalio/client';
import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { createControlActivities } from '../activities/control.js';
import { Catalog } from '../catalog/catalog.js';
import { CONTROL_TASK_QUEUE } from '../shared/constants.js';

export const WORKFLOWS_PATH = new URL('../workflows/index.ts', import.meta.url).pathname;

export interface OrchestratorOptions {
  connection: NativeConnection;
  namespace: string;
  client: Client;
  /** The operating record's SQLite file. */
  catalogPath: string;
  /** A prebuilt bundle (tests share one); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkflowBundleOption;
  /**
   * The key of the record's secret digests (see ControlDeps). Without one, a random key per process:
   * digests then compare only within one orchestrator's lifetime, but never reveal anything.
   */
  secretHashKey?: Buffer;
}

/** The control worker: every workflow, plus the activities that write state and talk to other workflows. */
export async function createOrchestratorWorker(options: OrchestratorOptions): Promise<Worker> {
  const catalog = new Catalog(options.catalogPath);
  return Worker.create({
    connection: options.connection,
    namespace: options.namespace,
    taskQueue: CONTROL_TASK_QUEUE,
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    activities: createControlActivities({
      client: options.client,
      catalog,
      secretHashKey: options.secretHashKey ?? crypto.randomBytes(32),
    }),
  });
}
