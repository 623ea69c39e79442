import fs from 'node:fs';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { loadClientConnectConfig } from '@temporalio/envconfig';
import { NativeConnection } from '@temporalio/worker';
import { processAlive } from '../shared/processes.js';
import { stateDir } from '../shared/settings.js';

/** What `expctl dev` writes so other commands in the same state directory find its server. */
export interface DevStackInfo {
  pid: number;
  address: string;
  uiUrl: string;
  startedAt: string;
}

export function devInfoPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir(env), 'dev.json');
}

export function readDevInfo(env: NodeJS.ProcessEnv = process.env): DevStackInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(devInfoPath(env), 'utf8')) as DevStackInfo;
  } catch {
    return undefined;
  }
}

/**
 * Connection settings, from Temporal's usual sources: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 * TEMPORAL_API_KEY, TEMPORAL_TLS_* and the TOML profile file (TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE).
 * With none of those, a running `expctl dev` in this state directory, else localhost:7233.
 */
export function connectionSettings(env: NodeJS.ProcessEnv = process.env) {
  const { connectionOptions, namespace } = loadClientConnectConfig({ overrideEnvVars: env as Record<string, string> });
  if (!env.TEMPORAL_ADDRESS && !connectionOptions.address) {
    const dev = readDevInfo(env);
    connectionOptions.address = dev && processAlive(dev.pid) ? dev.address : 'localhost:7233';
  }
  return { connectionOptions, namespace: namespace ?? 'default' };
}

export async function connectClient(env: NodeJS.ProcessEnv = process.env): Promise<Client> {
  const { connectionOptions, namespace } = connectionSettings(env);
  const connection = await Connection.connect(connectionOptions);
  return new Client({ connection, namespace });
}

export async function connectWorkerConnection(env: NodeJS.ProcessEnv = process.env): Promise<{ connection: NativeConnection; namespace: string }> {
  const { connectionOptions, namespace } = connectionSettings(env);
  return { connection: await NativeConnection.connect(connectionOptions), namespace };
}
