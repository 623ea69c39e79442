import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CatalogReader } from '../../catalog/catalog.js';
import { isPostgresUrl } from '../../catalog/sql.js';
import { refUpdateRefusal } from '../../domain/fleet-remote.js';
import { startFleetRemote } from '../../fleet-remote/server.js';
import type { Certificate } from '../../domain/authorization.js';
import { loadIssuerPublicKey } from '../../security/credentials.js';
import { catalogLocation, fleetRemoteDir, gitPort } from '../../shared/settings.js';
import { listenPlan } from '../../temporal/listen.js';
import { CliError } from '../output.js';

/**
 * Revocations as the catalog lists them, read when a request comes (the catalog may appear after
 * the remote starts, as under `expctl dev`); without a catalog on this host, none are known.
 */
export function catalogRevocations(location = catalogLocation()): (certificate: Certificate) => Promise<boolean> {
  let reader: Promise<CatalogReader | null> | undefined;
  return async (certificate) => {
    reader ??=
      isPostgresUrl(location) || fs.existsSync(location) ? CatalogReader.open(location) : Promise.resolve(null);
    const opened = await reader.catch(() => null);
    if (!opened) reader = undefined; // not there yet: ask again next time
    return opened ? opened.isRevoked(certificate) : false;
  };
}

/** `expctl fleet-remote serve`: the fleet's git remote, served over signed HTTP until SIGINT/SIGTERM. */
export async function fleetRemoteServeCommand(options: { listen?: string; port?: number; dir?: string }) {
  // The same rule as `expctl dev --listen`: an address of this host, or all of them.
  let plan;
  try {
    plan = listenPlan(options.listen, os.networkInterfaces(), os.hostname());
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  let served;
  try {
    served = await startFleetRemote({
      dir: path.resolve(options.dir ?? fleetRemoteDir()),
      listen: plan.forwardIp ?? plan.serverIp,
      port: options.port ?? gitPort(),
      ...(plan.advertised ? { advertised: plan.advertised } : {}),
      issuer: loadIssuerPublicKey(),
      isRevoked: catalogRevocations(),
      log: (line) => console.error(line),
    });
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  const stop = () => void served.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  console.error(`expctl fleet-remote: serving ${served.dir}`);
  console.error(`  Submitting hosts: EXPCTL_FLEET_REMOTE=${served.url}`);
  await served.closed;
}

/** The served repository's pre-receive hook: refuses every ref update but a new shipped commit. */
export async function fleetRemoteCheckPushCommand(): Promise<void> {
  let input = '';
  for await (const chunk of process.stdin) input += String(chunk);
  const refusals = input
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => {
      const [oldSha, newSha, ref] = line.trim().split(' ') as [string, string, string];
      return refUpdateRefusal(ref, oldSha, newSha);
    })
    .filter((refusal): refusal is string => refusal !== null);
  if (refusals.length > 0) throw new CliError(`the fleet remote refuses this push: ${refusals.join('; ')}`);
}
