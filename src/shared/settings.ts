import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_POOL_STALL_REPAIR_SECONDS } from '../domain/limits.js';

/** A setting (environment variable) that expctl cannot use: the message names it and what it must be. */
export class ConfigurationError extends Error {}

/**
 * Where expctl keeps local state: the dev server's SQLite file, logs, worktrees, keys. EXPCTL_HOME,
 * else ./.expctl. A command sets EXPCTL_HOME from the user's running stack first (stack.ts).
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.EXPCTL_HOME || '.expctl');
}

export interface DevPorts {
  ip: string;
  grpcPort: number;
  uiPort: number;
}

function portFrom(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigurationError(`${name} must be a port number between 1 and 65535, got "${raw}"`);
  }
  return port;
}

/** Ports of the embedded dev server; the UI defaults to gRPC + 1000 like the Temporal CLI. */
export function devPorts(env: NodeJS.ProcessEnv = process.env): DevPorts {
  const grpcPort = portFrom(env, 'EXPCTL_TEMPORAL_PORT', 7233);
  return {
    ip: env.EXPCTL_TEMPORAL_IP ?? '127.0.0.1',
    grpcPort,
    uiPort: portFrom(env, 'EXPCTL_UI_PORT', grpcPort + 1000),
  };
}

/**
 * Where the operating record lives: a PostgreSQL URL (EXPCTL_CATALOG_URL, for clusters with
 * several orchestrators), else the SQLite file of catalogPath().
 */
export function catalogLocation(env: NodeJS.ProcessEnv = process.env): string {
  const url = env.EXPCTL_CATALOG_URL;
  if (url === undefined || url === '') return catalogPath(env);
  if (!/^postgres(ql)?:\/\//.test(url))
    throw new ConfigurationError(
      `EXPCTL_CATALOG_URL must be a postgres:// or postgresql:// URL, not ${url.split(':')[0]}:…`,
    );
  return url;
}

/** The SQLite catalog: EXPCTL_CATALOG, else catalog.sqlite in the state directory. */
export function catalogPath(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.EXPCTL_CATALOG ?? path.join(stateDir(env), 'catalog.sqlite'));
}

/** The machine's systemd/D-Bus machine id, or null where the host has none (some containers). */
export function readMachineId(): string | null {
  for (const file of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      const id = fs.readFileSync(file, 'utf8').trim();
      if (/^[0-9a-f]{32}$/i.test(id)) return id;
    } catch {
      // try the next place
    }
  }
  return null;
}

/**
 * This host's name in the fleet: task queues, placement records and pool entries use it.
 * EXPCTL_HOST, else the hostname plus 8 hex digits derived from the machine id, because cloned
 * VMs and containers share hostnames. The machine id itself is not shown (systemd asks that it
 * stay private); it is stable across reboots, so a restarted worker keeps its name and its runs.
 */
export function hostName(env: NodeJS.ProcessEnv = process.env, machineId: () => string | null = readMachineId): string {
  let name = env.EXPCTL_HOST;
  if (name === undefined || name === '') {
    const id = machineId();
    const suffix = id && crypto.createHash('sha256').update(`expctl-host:${id}`).digest('hex').slice(0, 8);
    name = suffix ? `${os.hostname()}-${suffix}` : os.hostname();
  }
  return name.replace(/[^A-Za-z0-9_.-]/g, '-');
}

/** Per-user cache for downloaded or built tools, reused by every clone on this machine. */
export function userCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'expctl');
}

/** The dataset store (content-addressed shards): EXPCTL_DATA_DIR, else data/ in the state directory. */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.EXPCTL_DATA_DIR ?? path.join(stateDir(env), 'data'));
}

/**
 * The fleet's git remote (EXPCTL_FLEET_REMOTE): where a submitter pushes the commit it runs and
 * every worker fetches it from, so hosts share no filesystem. Undefined: workers read the
 * submitter's repository path (one host, or a shared filesystem).
 */
export function fleetRemote(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.EXPCTL_FLEET_REMOTE || undefined;
}

/** The port a served fleet remote listens on: EXPCTL_GIT_PORT, else git's own 9418. */
export function gitPort(env: NodeJS.ProcessEnv = process.env): number {
  return portFrom(env, 'EXPCTL_GIT_PORT', 9418);
}

/** The bare repository a control host serves as the fleet remote. */
export function fleetRemoteDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(stateDir(env), 'git', 'fleet.git');
}

/**
 * How long the orchestrator lets the pool's workflow task keep failing before it repairs the pool
 * itself: EXPCTL_POOL_STALL_REPAIR_SECONDS (0: never, an operator runs `expctl pool repair`).
 */
export function poolStallRepairMs(env: NodeJS.ProcessEnv = process.env): number | null {
  const raw = env.EXPCTL_POOL_STALL_REPAIR_SECONDS;
  const seconds = raw === undefined || raw === '' ? DEFAULT_POOL_STALL_REPAIR_SECONDS : Number(raw);
  if (!Number.isFinite(seconds) || seconds < 0)
    throw new ConfigurationError(`EXPCTL_POOL_STALL_REPAIR_SECONDS must be a number of seconds (0: never), not ${raw}`);
  return seconds === 0 ? null : seconds * 1000;
}
