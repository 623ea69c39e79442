import path from 'node:path';
import { createGpuWorker, RegistrationRefusedError } from '../../roots/gpu-worker.js';
import { PERMISSION_DENIED_EXIT_CODE } from '../../domain/authorization.js';
import { CliError } from '../output.js';
import { createOrchestratorWorker } from '../../roots/orchestrator.js';
import { installWorkerRuntime } from '../../shared/runtime.js';
import { CONTROL_TASK_QUEUE, POOL_TASK_QUEUE } from '../../shared/constants.js';
import { ServerLink, serverAddressOf, watchServer } from '../../shared/server-link.js';
import { catalogLocation, hostName, stateDir } from '../../shared/settings.js';
import { loadCredential, loadIssuerPublicKey } from '../../security/credentials.js';
import { narrowExistingDir } from '../../security/files.js';
import { connectClient, connectWorkerConnection, dataConverter } from '../../temporal/connection.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';

export interface WorkerOptions {
  host?: string;
  gpus?: number[];
  cpuSlots?: number;
  workDir?: string;
  runtimeTag: string[];
  orphanGrace?: number;
  fencingTime?: number;
  heartbeat?: number;
}

/** The fencing time in ms: --fencing-time, else EXPCTL_FENCING_SECONDS, else the default (undefined). */
export function fencingMsOf(option: number | undefined, env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (option !== undefined) return option * 1000;
  const text = env.EXPCTL_FENCING_SECONDS;
  if (text === undefined || text === '') return undefined;
  const seconds = Number(text);
  if (!Number.isInteger(seconds) || seconds <= 0)
    throw new CliError(
      `EXPCTL_FENCING_SECONDS must be a positive whole number of seconds, not ${JSON.stringify(text)}`,
      EXIT_CODES.validation_failed,
    );
  return seconds * 1000;
}

function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = () => {
    if (stopping) return;
    stopping = true;
    void stop().then(() => process.exit(EXIT_CODES.decided));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
}

const withFencing = (fencingMs: number | undefined) => (fencingMs === undefined ? {} : { fencingMs });

/** `expctl worker`: this host's GPUs (or CPU slots) join the fleet at TEMPORAL_ADDRESS. */
export async function workerCommand(options: WorkerOptions): Promise<void> {
  installWorkerRuntime();
  await narrowExistingDir(stateDir());
  // First: without a keyring this worker could not read a single task.
  const converter = await dataConverter();
  const { connection, namespace } = await connectWorkerConnection();
  const client = await connectClient();
  const refused = (error: unknown): never => {
    if (error instanceof RegistrationRefusedError) throw new CliError(error.message, PERMISSION_DENIED_EXIT_CODE);
    throw error;
  };
  const worker = await createGpuWorker({
    connection,
    namespace,
    client,
    dataConverter: converter,
    host: options.host ?? hostName(),
    gpus: options.gpus,
    cpuSlots: options.cpuSlots,
    runtimeTags: options.runtimeTag,
    workDir: options.workDir ?? path.join(stateDir(), 'worker'),
    ...(options.orphanGrace ? { orphanGraceMs: options.orphanGrace * 1000 } : {}),
    ...withFencing(fencingMsOf(options.fencingTime)),
    ...(options.heartbeat ? { poolHeartbeatMs: options.heartbeat * 1000 } : {}),
    credential: loadCredential(),
  }).catch(refused);
  stopOnSignals(() => worker.shutdown());
  console.error(
    `expctl worker ${worker.host}: ${worker.slots.map((s) => `${s.slotId} (${s.acceleratorClass}, ${s.memoryMb} MB)`).join(', ')}`,
  );
  // Said once the pool holds these slots: from then on a submitted run can be placed here.
  void worker.registered().then(
    () => console.error(`expctl worker ${worker.host}: joined the fleet`),
    () => undefined, // a refusal is what run() throws below
  );
  await worker.run().catch(refused);
}

/** `expctl orchestrator`: the control worker (all workflows) for a real cluster. */
export async function orchestratorCommand(): Promise<void> {
  installWorkerRuntime();
  await narrowExistingDir(stateDir());
  const converter = await dataConverter();
  const { connection, namespace } = await connectWorkerConnection();
  const client = await connectClient();
  const worker = await createOrchestratorWorker({
    connection,
    namespace,
    client,
    dataConverter: converter,
    catalog: catalogLocation(),
    issuer: loadIssuerPublicKey(),
  });
  // The orchestrator makes no periodic call of its own: a probe tells its operator when the server goes and comes back.
  const link = new ServerLink('expctl orchestrator', serverAddressOf(client), (line) => console.error(line));
  const stopWatching = watchServer(
    () => client.withDeadline(Date.now() + 5000, () => client.workflowService.getSystemInfo({})),
    link,
  );
  stopOnSignals(async () => {
    stopWatching();
    worker.shutdown();
  });
  console.error(`expctl orchestrator: polling ${CONTROL_TASK_QUEUE} and ${POOL_TASK_QUEUE} in namespace ${namespace}`);
  await worker.run();
}
