import { startFleetRemote, type FleetRemoteOptions, type ServedRemote } from '../fleet-remote/server.js';
import { loadIssuerPublicKey } from '../security/credentials.js';
import { fleetRemoteDir, gitPort } from '../shared/settings.js';
import type { ListenPlan } from '../temporal/listen.js';
import type { StackLifetime } from './lifetime.js';

/**
 * Served to other hosts, the stack also serves the fleet's git remote: their commits travel
 * through it. It verifies requests against the fleet's issuer key. None when no host can connect.
 */
export async function serveFleetRemote(
  plan: ListenPlan,
  lifetime: StackLifetime,
  isRevoked: FleetRemoteOptions['isRevoked'],
): Promise<ServedRemote | undefined> {
  if (!plan.advertised) return undefined;
  const fleetRemote = await startFleetRemote({
    dir: fleetRemoteDir(),
    listen: plan.forwardIp ?? plan.serverIp,
    port: gitPort(),
    advertised: plan.advertised,
    issuer: loadIssuerPublicKey(),
    isRevoked,
    log: lifetime.log,
  });
  lifetime.onStop(() => fleetRemote.stop());
  return fleetRemote;
}
