import crypto from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { NativeConnection } from '@temporalio/worker';
import { inject } from 'vitest';
import { createGpuWorker, type GpuWorkerHandle } from '../../src/roots/gpu-worker.js';
import { createOrchestratorWorker, type OrchestratorWorker } from '../../src/roots/orchestrator.js';
import type { Role } from '../../src/domain/authorization.js';
import {
  credentialPath,
  ensureLocalAdmin,
  issueCredential,
  issuerPublicKeyPath,
  loadIssuerPublicKey,
  writeCredential,
  type Credential,
} from '../../src/security/credentials.js';
import { signAs } from '../../src/client/sign.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { Catalog, CatalogReader } from '../../src/catalog/catalog.js';
import { installWorkerRuntime } from '../../src/shared/runtime.js';
import { dataConverter } from '../../src/temporal/connection.js';
import { configurePoolUpdate, drainUpdate, type PoolConfiguration } from '../../src/workflows/definitions.js';
import { ensureNamespace, ensureSearchAttributes } from '../../src/temporal/setup.js';
import { FilesystemStore } from '../../src/store/fs-store.js';
import type { FleetStore } from '../../src/store/store.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

let bundle: Promise<{ code: string }> | undefined;
/** The workflow code the test setup bundled once for the whole run (bundling costs seconds of CPU). */
function workflowBundle() {
  bundle ??= fs.readFile(inject('workflowBundleFile'), 'utf8').then((code) => ({ code }));
  return bundle;
}

/**
 * The test process's fleet trust: an issuer and an admin credential in a directory of its own.
 * EXPCTL_CREDENTIAL_FILE points at the credential, so the client API and CLI processes started
 * from this test file act as that admin unless a test says otherwise.
 */
let trust: { home: { EXPCTL_HOME: string }; credential: Credential } | undefined;
export function testTrust() {
  if (!trust) {
    const home = { EXPCTL_HOME: fsSync.mkdtempSync(path.join(os.tmpdir(), 'expctl-trust-')) };
    trust = { home, credential: ensureLocalAdmin(home).credential };
    process.env.EXPCTL_CREDENTIAL_FILE = credentialPath(home);
    // `expctl orchestrator` processes a test starts verify against the same issuer.
    process.env.EXPCTL_ISSUER_PUBLIC_KEY_FILE = issuerPublicKeyPath(home);
  }
  return trust;
}

/** A credential of another identity and role from the test issuer, and the 0600 file holding it. */
export function issueTestCredential(name: string, role: Role): { credential: Credential; file: string } {
  const { home } = testTrust();
  const credential = issueCredential({ name, role }, home);
  const file = path.join(home.EXPCTL_HOME, `${name}.credential.json`);
  writeCredential(file, credential);
  return { credential, file };
}

/**
 * Makes this process's `nvidia-smi` the fake one describing `fleet` (a CSV under fixtures/fleets, or
 * an absolute path). Its `topo -m` prints the fleet's `.topo` file beside it where there is one.
 */
export function useFakeFleet(fleet: string | undefined): void {
  const bin = path.join(FIXTURES, 'bin');
  if (!process.env.PATH!.split(path.delimiter).includes(bin))
    process.env.PATH = `${bin}${path.delimiter}${process.env.PATH}`;
  const file = fleet && (path.isAbsolute(fleet) ? fleet : path.join(FIXTURES, 'fleets', fleet));
  if (file) process.env.FAKE_NVIDIA_SMI_FLEET = file;
  else delete process.env.FAKE_NVIDIA_SMI_FLEET;
  const topology = file && file.replace(/\.csv$/, '.topo');
  if (topology && topology !== file && fsSync.existsSync(topology)) process.env.FAKE_NVIDIA_SMI_TOPO = topology;
  else delete process.env.FAKE_NVIDIA_SMI_TOPO;
}

export interface TestStack {
  address: string;
  namespace: string;
  client: Client;
  /** Payload encryption with the test run's keyring; any other client of the stack needs it too. */
  dataConverter: DataConverter;
  nativeConnection: NativeConnection;
  /** The in-process orchestrator (none with `orchestrator: false`: the test runs its own). */
  orchestrator?: OrchestratorWorker;
  gpuWorker?: GpuWorkerHandle;
  /** What the stack's GPU workers told their operator, in order. */
  workerLog: string[];
  /** What the in-process orchestrator told its operator, in order. */
  orchestratorLog: string[];
  workDir: string;
  /** Where the orchestrator keeps the record: the SQLite file, or the PostgreSQL URL it was given. */
  catalogPath: string;
  /** The record as a reader sees it (read-only; opened with the stack, closed by stop). */
  catalog: CatalogReader;
  /** The dataset store (EXPCTL_DATA_DIR when the test sets it, else data/ in workDir). */
  dataDir: string;
  /** The fleet store the orchestrator and every worker of the stack share (EXPCTL_STORE, else store/ in workDir, unless given). */
  store: FleetStore;
  addGpuWorker(options: {
    host: string;
    cpuSlots?: number;
    fleet?: string;
    runtimeTags?: string[];
    /** Registers with this credential instead of the test admin's. */
    credential?: Credential;
    /** How long a run's artifact uploads retry an unreachable store (the worker's default otherwise). */
    artifactUploadMs?: number;
  }): Promise<GpuWorkerHandle>;
  stop(): Promise<void>;
}

/**
 * A namespace of its own on the shared dev server (so test files never see each other's pool,
 * tags or workers), with the orchestrator and optionally one GPU worker running in this process.
 */
export async function startStack(options: {
  name: string;
  host?: string;
  cpuSlots?: number;
  fleet?: string;
  gpuWorker?: boolean;
  address?: string;
  /** A PostgreSQL URL for the catalog (default: a SQLite file in the stack's directory). */
  catalog?: string;
  /** false: no orchestrator in this process (the test starts `expctl orchestrator` processes). */
  orchestrator?: boolean;
  /** The fleet store (default: EXPCTL_STORE's directory, else one in the stack's directory). */
  store?: FleetStore;
  /** How long the pool may stall before the orchestrator repairs it (null: never; default: the product's). */
  poolStallRepairMs?: number | null;
}): Promise<TestStack> {
  installWorkerRuntime();
  const { home, credential } = testTrust();
  // A file may bring its own server (one it stops and restarts); the shared one otherwise.
  const address = options.address ?? inject('temporalAddress');
  const namespace = `${options.name}-${crypto.randomBytes(3).toString('hex')}`;
  const connection = await Connection.connect({ address });
  await ensureNamespace(connection, namespace);
  await ensureSearchAttributes(connection, namespace);
  const converter = await dataConverter();
  const client = new Client({ connection, namespace, dataConverter: converter });
  const nativeConnection = await NativeConnection.connect({ address });
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), `expctl-${options.name}-`));
  // The dataset store the orchestrator writes and the workers read (a test may name its own).
  const storeDir = process.env.EXPCTL_DATA_DIR ?? path.join(workDir, 'data');
  const catalogPath = options.catalog ?? path.join(workDir, 'catalog.sqlite');
  // The test file's own store (setup-env.ts), which the CLI and the test's own checks open too.
  const store = options.store ?? new FilesystemStore(process.env.EXPCTL_STORE ?? path.join(workDir, 'store'));
  const orchestratorLog: string[] = [];
  const orchestrator =
    options.orchestrator === false
      ? undefined
      : await createOrchestratorWorker({
          connection: nativeConnection,
          namespace,
          client,
          dataConverter: converter,
          catalog: catalogPath,
          dataDir: storeDir,
          store,
          workflowBundle: { code: (await workflowBundle()).code },
          issuer: loadIssuerPublicKey(home),
          log: (line) => orchestratorLog.push(line),
          ...(options.poolStallRepairMs !== undefined ? { poolStallRepairMs: options.poolStallRepairMs } : {}),
        });
  // Without one here, the catalog is made now, as the orchestrators the test starts would make it.
  if (!orchestrator) await (await Catalog.open(catalogPath)).close();
  const running: Promise<unknown>[] = orchestrator ? [orchestrator.run()] : [];
  const gpuWorkers: GpuWorkerHandle[] = [];
  const workerLog: string[] = [];

  const addGpuWorker = async (worker: {
    host: string;
    cpuSlots?: number;
    fleet?: string;
    runtimeTags?: string[];
    credential?: Credential;
    artifactUploadMs?: number;
  }) => {
    useFakeFleet(worker.fleet);
    const handle = await createGpuWorker({
      connection: nativeConnection,
      namespace,
      client,
      dataConverter: converter,
      host: worker.host,
      cpuSlots: worker.cpuSlots,
      runtimeTags: worker.runtimeTags,
      workDir: path.join(workDir, worker.host),
      dataDir: storeDir,
      store,
      poolHeartbeatMs: 1000,
      trainingHeartbeatMs: 500,
      killAfterMs: 2000,
      checkpointSyncMs: 1000,
      log: (line) => workerLog.push(line),
      credential: worker.credential ?? credential,
      ...(worker.artifactUploadMs !== undefined ? { artifactUploadMs: worker.artifactUploadMs } : {}),
    });
    running.push(handle.run());
    gpuWorkers.push(handle);
    // Ready when the pool has it: a request submitted before that is refused (no slot registered).
    await handle.registered();
    return handle;
  };
  const stack: TestStack = {
    address,
    namespace,
    client,
    dataConverter: converter,
    nativeConnection,
    ...(orchestrator ? { orchestrator } : {}),
    workerLog,
    orchestratorLog,
    workDir,
    catalogPath,
    // The orchestrator has created and migrated it by now.
    catalog: await CatalogReader.open(catalogPath),
    dataDir: storeDir,
    store,
    addGpuWorker,
    async stop() {
      for (const worker of gpuWorkers) await worker.shutdown();
      if (orchestrator?.getState() === 'RUNNING') orchestrator.shutdown();
      await Promise.allSettled(running);
      await stack.catalog.close();
      await nativeConnection.close();
      await connection.close();
      await fs.rm(workDir, { recursive: true, force: true });
    },
  };
  if (options.gpuWorker !== false)
    stack.gpuWorker = await addGpuWorker({
      host: options.host ?? 'testhost',
      cpuSlots: options.cpuSlots,
      fleet: options.fleet,
    });
  return stack;
}

/** Sets the pool's heartbeat limit or placement policy, signed as the test admin. */
export async function configurePool(client: Client, configuration: PoolConfiguration) {
  return client.workflow.getHandle(POOL_WORKFLOW_ID).executeUpdate(configurePoolUpdate, {
    args: [{ ...configuration, authorization: signAs('configure_pool', 'pool', configuration) }],
  });
}

/** Drains (or undrains) a host or slot, signed as the test admin. */
export async function drain(client: Client, target: string, drained: boolean, reason: string) {
  const change = { target, drained, reason };
  return client.workflow.getHandle(POOL_WORKFLOW_ID).executeUpdate(drainUpdate, {
    args: [{ ...change, authorization: signAs('drain', target, change) }],
  });
}
