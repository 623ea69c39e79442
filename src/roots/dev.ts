import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import type { FleetRemoteOptions } from '../fleet-remote/server.js';
import { createGpuWorker, type GpuWorkerHandle } from './gpu-worker.js';
import { createOrchestratorWorker } from './orchestrator.js';
import { ensureLocalAdmin, loadIssuerPublicKey } from '../security/credentials.js';
import { payloadCodec } from '../security/codec.js';
import { startDevCodecEndpoint } from '../security/codec-server.js';
import { ensureKeyring } from '../security/keyring.js';
import { installWorkerRuntime } from '../shared/runtime.js';
import { catalogLocation, hostName } from '../shared/settings.js';
import { writeStackPointer, type StackPointer } from '../shared/stack.js';
import { dataConverter } from '../temporal/connection.js';
import { AbortedError } from '../temporal/dev-server.js';
import { ensureHealthSchedule } from '../client/schedules.js';
import type { ListenPlan } from '../temporal/listen.js';
import type { StackLifetime } from '../dev-stack/lifetime.js';
import { stopOrphanedServer, superviseDevServer } from '../dev-stack/server.js';
import { serveFleetRemote } from '../dev-stack/fleet-remote.js';
import { joined, SupervisedWorkers } from '../dev-stack/workers.js';
import { upBanner } from '../dev-stack/banner.js';

export interface DevStackOptions {
  /** false: the control plane only (server, orchestrator); GPU hosts join with `expctl worker`. */
  worker: boolean;
  cpuSlots?: number;
  plan: ListenPlan;
  home: string;
  /** The user's stack pointer, when this stack is the default (its codec endpoint is added once known). */
  pointer: StackPointer | undefined;
  /** Whether the fleet remote refuses a credential (the catalog's revocations). */
  isRevoked: FleetRemoteOptions['isRevoked'];
}

export interface DevStack {
  client: Client;
}

/**
 * `expctl dev`'s composition root: the Temporal server under supervision, the fleet remote when
 * other hosts can connect, the orchestrator, this host's GPU worker, the health Schedule and the
 * codec endpoint. Each part registers its own stop with the lifetime, undone last-first.
 */
export async function startDevStack(options: DevStackOptions, lifetime: StackLifetime): Promise<DevStack> {
  const { signal, log } = lifetime;
  const { plan, home, pointer } = options;
  await stopOrphanedServer(plan.serverIp, log);
  // Payloads are encrypted with the state directory's keyring, made on the first start.
  const keys = await ensureKeyring();
  if (keys.created)
    log(`expctl: created the payload keyring ${keys.created.file}; it alone decrypts this stack's runs: keep it`);
  const converter = await dataConverter();
  const server = await superviseDevServer(plan, lifetime, home);
  // This user's admin credential and the fleet's issuer key (created on first start): the fleet
  // remote verifies requests against the key.
  const { credential } = ensureLocalAdmin();
  const fleetRemote = await serveFleetRemote(plan, lifetime, options.isRevoked);

  log(`expctl: starting the orchestrator${options.worker ? ' and the GPU worker' : ''} ...`);
  installWorkerRuntime();
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  lifetime.onStop(() => nativeConnection.close().catch(() => undefined));
  // Not closed on stop: a call still retrying (the demo's wait for a result) would throw
  // 'Channel has been shut down' from a timer; the process exits right after the stop anyway.
  const clientConnection = await Connection.connect({ address: server.address });
  const client = new Client({ connection: clientConnection, namespace: 'default', dataConverter: converter });
  if (signal.aborted) throw new AbortedError();
  const connections = { connection: nativeConnection, namespace: 'default', client, dataConverter: converter };

  const workers = new SupervisedWorkers(lifetime);
  await workers.add('orchestrator', async () => {
    const orchestrator = await createOrchestratorWorker({
      ...connections,
      catalog: catalogLocation(),
      issuer: loadIssuerPublicKey(),
    });
    return {
      run: () => orchestrator.run(),
      stop: async () => {
        if (orchestrator.getState() === 'RUNNING') orchestrator.shutdown();
      },
    };
  });
  if (signal.aborted) throw new AbortedError();
  let gpuWorker: GpuWorkerHandle | undefined;
  if (options.worker)
    await workers.add('GPU worker', async () => {
      const created = await createGpuWorker({
        ...connections,
        host: hostName(),
        workDir: path.join(home, 'worker'),
        cpuSlots: options.cpuSlots,
        credential,
      });
      gpuWorker = created;
      return { run: () => created.run(), stop: () => created.shutdown().catch(() => undefined) };
    });
  if (signal.aborted) throw new AbortedError();
  // "Up" means a run submitted now is placed: the pool must hold this host's slots first.
  if (gpuWorker) await joined(() => gpuWorker!, lifetime);
  if (signal.aborted) throw new AbortedError();
  await ensureHealthSchedule(client);
  if (signal.aborted) throw new AbortedError();
  const codecEndpoint = await startDevCodecEndpoint(await payloadCodec(), server.uiUrl);
  lifetime.onStop(() => codecEndpoint.close());
  if (pointer) writeStackPointer({ ...pointer, codecEndpoint: codecEndpoint.endpoint });

  console.log(
    upBanner({
      uiUrl: server.uiUrl,
      address: server.address,
      home,
      isDefault: pointer !== undefined,
      plan,
      fleetRemoteUrl: fleetRemote?.url,
      codecEndpoint: codecEndpoint.endpoint,
      worker: gpuWorker,
      cpuSlots: options.cpuSlots,
    }),
  );
  return { client };
}
