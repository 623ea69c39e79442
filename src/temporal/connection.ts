import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import type { DataConverter } from '@temporalio/common';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import type { NativeConnection } from '@temporalio/worker';
import { encryptingDataConverter } from '../security/codec.js';
import { stateDir } from '../shared/settings.js';
import { isRunning, readJsonFile, type ProcessIdentity } from './pid-file.js';

/**
 * What `expctl dev` writes, first thing, so other commands in the same state directory find its
 * server. It is also the stack's lock: one `expctl dev` (so one server) per state directory.
 */
export interface DevStackInfo extends ProcessIdentity {
  address: string;
  uiUrl: string;
  startedAt: string;
}

/** The Temporal server `expctl dev` started, so the next start can stop it if `expctl dev` was killed. */
export interface DevServerRecord extends ProcessIdentity {
  dbFile: string;
  address: string;
}

export function devInfoPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir(env), 'dev.json');
}

export function devServerPidPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir(env), 'temporal.pid.json');
}

export function readDevInfo(env: NodeJS.ProcessEnv = process.env): DevStackInfo | undefined {
  return readJsonFile<DevStackInfo>(devInfoPath(env));
}

/** The running `expctl dev` of this state directory, if there is one (its pid checked for identity). */
export function runningDevStack(env: NodeJS.ProcessEnv = process.env): DevStackInfo | undefined {
  const info = readDevInfo(env);
  return info && isRunning({ pid: info.pid, startTime: info.startTime ?? null }) ? info : undefined;
}

/**
 * Connection settings, from Temporal's usual sources: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 * TEMPORAL_API_KEY, TEMPORAL_TLS_* and the TOML profile file (TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE).
 * With none of those, a running `expctl dev` in this state directory, else localhost:7233.
 */
export function connectionSettings(env: NodeJS.ProcessEnv = process.env) {
  const { connectionOptions, namespace } = loadClientConnectConfig({ overrideEnvVars: env as Record<string, string> });
  /** Where the address came from, for a message that says why expctl tried it. */
  let origin = env.TEMPORAL_ADDRESS ? 'TEMPORAL_ADDRESS' : 'the Temporal profile';
  if (!env.TEMPORAL_ADDRESS && !connectionOptions.address) {
    const dev = runningDevStack(env);
    connectionOptions.address = dev?.address ?? 'localhost:7233';
    origin = dev
      ? `the expctl dev running in ${stateDir(env)}`
      : `the default: no expctl dev is running in ${stateDir(env)}`;
  }
  return { connectionOptions, namespace: namespace ?? 'default', origin };
}

/** The Temporal server of the stack cannot be reached: the stack is down, or the settings point elsewhere. */
export class StackUnreachableError extends Error {}

/**
 * The data converter of every expctl client and worker: payloads encrypted with the keyring that
 * `env` names (src/security). Rejects, saying how to get one, where there is no keyring.
 */
export async function dataConverter(env: NodeJS.ProcessEnv = process.env): Promise<DataConverter> {
  return encryptingDataConverter(env);
}

export async function connectClient(env: NodeJS.ProcessEnv = process.env): Promise<Client> {
  const { connectionOptions, namespace, origin } = connectionSettings(env);
  const converter = await dataConverter(env);
  let connection: Connection;
  try {
    connection = await Connection.connect(connectionOptions);
  } catch (error) {
    throw new StackUnreachableError(
      `cannot reach the Temporal server at ${connectionOptions.address} (${origin}): ${(error as Error).message}`,
    );
  }
  return new Client({ connection, namespace, dataConverter: converter });
}

export async function connectWorkerConnection(
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ connection: NativeConnection; namespace: string }> {
  const { connectionOptions, namespace } = connectionSettings(env);
  // Loaded here: the worker SDK (its native bridge) costs every other command's start otherwise.
  const { NativeConnection } = await import('@temporalio/worker');
  return { connection: await NativeConnection.connect(connectionOptions), namespace };
}
