/**
 * One process of simulated hosts for `npm run bench -- sim`: joins the hosts named in SIM_HOSTS
 * (comma-separated) with SIM_GPUS fake GPUs each to the pool of the stack its environment names,
 * prints `ready` once all are online, keeps them alive, and has them leave on SIGTERM.
 */
import path from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { DEFAULT_POOL_HEARTBEAT_MS } from '../../src/domain/fleet.js';
import { livenessPeriodMs } from '../../src/domain/limits.js';
import { acknowledgedHeartbeatOn } from '../../src/gpu-worker/host-confirmations.js';
import { RegistrationRefusedError } from '../../src/gpu-worker/pool-membership.js';
import { ensureLocalAdmin } from '../../src/security/credentials.js';
import { connectClient, connectWorkerConnection, dataConverter } from '../../src/temporal/connection.js';
import { simHost, type SimHost } from './sim-protocol.js';

/** Tries per host: a dev server under load now and then fails a call (even with "namespace not found"). */
const JOIN_TRIES = 5;

/** Joins the host, trying again after a failed call; a refusal is final. */
async function joinPatiently(host: SimHost, log: (line: string) => void): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await host.join();
    } catch (error) {
      if (error instanceof RegistrationRefusedError || attempt >= JOIN_TRIES) throw error;
      log(`sim-hosts: ${host.host} could not join (${(error as Error).message}); trying again`);
      await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
    }
  }
}

/** Hosts joining at once: a few in flight keep the pool's registration path busy without a pile-up. */
const JOINING_AT_ONCE = 8;

async function main(): Promise<void> {
  // A Worker per host: their start-up lines, a hundred at a time, say nothing the bench needs.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const names = (process.env.SIM_HOSTS ?? '').split(',').filter(Boolean);
  const gpus = Number(process.env.SIM_GPUS ?? 8);
  if (names.length === 0 || !Number.isInteger(gpus) || gpus <= 0)
    throw new Error('sim-hosts needs SIM_HOSTS (host names, comma-separated) and SIM_GPUS (a positive whole number)');
  const client = await connectClient(process.env);
  const { connection, namespace } = await connectWorkerConnection(process.env);
  const converter = await dataConverter(process.env);
  const { credential } = ensureLocalAdmin(process.env);
  const log = (line: string) => console.error(line);
  const datasetsDir = path.join(process.env.EXPCTL_HOME ?? '.', 'sim-datasets');
  const acknowledgedHeartbeat = acknowledgedHeartbeatOn(
    { connection, namespace, dataConverter: converter },
    livenessPeriodMs(DEFAULT_POOL_HEARTBEAT_MS),
  );
  const hosts: SimHost[] = [];
  for (const host of names)
    hosts.push(
      await simHost({
        client,
        connection,
        namespace,
        dataConverter: converter,
        credential,
        acknowledgedHeartbeat,
        host,
        gpus,
        datasetsDir,
        log,
      }),
    );
  for (let i = 0; i < hosts.length; i += JOINING_AT_ONCE)
    await Promise.all(hosts.slice(i, i + JOINING_AT_ONCE).map((h) => joinPatiently(h, log)));
  console.log('ready');
  process.once('SIGTERM', () => {
    void Promise.all(hosts.map((h) => h.leave())).finally(() => process.exit(0));
  });
}

main().catch((error: Error) => {
  console.error(`sim-hosts: ${error.stack ?? error.message}`);
  process.exit(1);
});
