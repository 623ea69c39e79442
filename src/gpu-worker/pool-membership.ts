import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { QueryRejectedError, WorkflowClient, WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { HostRegistration, Slot } from '../domain/fleet.js';
import type { HostFencing } from '../domain/limits.js';
import type { HostTopology } from '../domain/topology.js';
import { PERMISSION_DENIED } from '../domain/authorization.js';
import { POOL_TASK_QUEUE, POOL_WORKFLOW_ID, POOL_WORKFLOW_TASK_TIMEOUT } from '../shared/constants.js';
import { contentDigest } from '../security/content-digest.js';
import { signRequest, type Credential } from '../security/credentials.js';
import { deregisterHostSignal, hostRegistrationQuery, registerHostSignal } from '../workflows/definitions.js';
import { isConnectionError, ServerLink, serverAddressOf } from '../shared/server-link.js';
import { softwareVersions } from './software.js';

/** The pool refused this host: no valid worker credential, or its name is held by another live worker. */
export class RegistrationRefusedError extends Error {
  readonly type = PERMISSION_DENIED;
}

/** The longest the watch's question to the pool may take before it counts as not reaching the server. */
const WATCH_DEADLINE_MS = 10_000;

/**
 * How often a host whose liveness heartbeats the server accepts still asks the pool how it holds
 * it (in between, the watch only looks that the pool's run is open, at the server, which costs the
 * pool nothing): a query takes one of the pool's turns, and 125 hosts asking every 10 s were a
 * good part of what kept one pool from placing 1,000 GPUs' runs.
 */
const CONFIRMED_HOST_ASKS_EVERY_MS = 60_000;

export type LiveLease = NonNullable<HostRegistration['liveLeases']>[number];

/** What a host tells the pool as it joins: its slots, data, software, and the runs it kept at start. */
export async function hostRegistration(host: {
  host: string;
  hostQueue: string;
  slots: Slot[];
  driverVersion?: string;
  datasetsDir: string;
  liveRuns: string[];
  heartbeatMs: number;
  fencing?: HostFencing;
  topology?: HostTopology;
  /** This worker process's incarnation, where its liveness activities were made with it first. */
  incarnation?: string;
}): Promise<HostRegistration> {
  return {
    host: host.host,
    hostQueue: host.hostQueue,
    slots: host.slots,
    driverVersion: host.driverVersion,
    datasets: (await fs.readdir(host.datasetsDir).catch(() => [])).filter((name) => !name.startsWith('.')),
    software: await softwareVersions(),
    registeredAt: Date.now(),
    incarnation: host.incarnation ?? crypto.randomUUID(),
    // The pool keeps these runs' leases across the restart: their experiments re-attach to them.
    liveRuns: host.liveRuns,
    // Its keepHostAlive heartbeats this often; it is never declared lost before it has missed two.
    heartbeatMs: host.heartbeatMs,
    // The pool hands it to every lease on this host: a lost run is re-placed only after it.
    ...(host.fencing ? { fencing: host.fencing } : {}),
    // Placement prefers sets inside one NVLink island or NUMA node (CPU hosts have none).
    ...(host.topology ? { topology: host.topology } : {}),
  };
}

/** The leases of the runs a worker watches, as a re-created pool needs them: every GPU of a gang lease. */
export function liveLeasesOf(
  runs: Iterable<
    [
      string,
      { leaseId?: string | undefined; slotId?: string | undefined; slotIds?: string[]; leaseReleased?(): boolean },
    ]
  >,
): LiveLease[] {
  // A run that gave its lease back at its exit is only being recorded: it holds nothing.
  return [...runs].flatMap(([experimentId, watch]) =>
    watch.leaseId && watch.slotId && !watch.leaseReleased?.()
      ? [
          {
            experimentId,
            leaseId: watch.leaseId,
            slotId: watch.slotId,
            ...(watch.slotIds && watch.slotIds.length > 1 ? { slotIds: watch.slotIds } : {}),
          },
        ]
      : [],
  );
}

/** Registers a host, starting the pool first where there is none (signal-with-start). */
export function registerStartingPool(client: Client, registration: HostRegistration): Promise<unknown> {
  return client.workflow.signalWithStart('poolWorkflow', {
    workflowId: POOL_WORKFLOW_ID,
    taskQueue: POOL_TASK_QUEUE,
    workflowTaskTimeout: POOL_WORKFLOW_TASK_TIMEOUT,
    args: [],
    signal: registerHostSignal,
    signalArgs: [registration],
  });
}

export interface MembershipOptions {
  client: Client;
  credential: Credential;
  log: (line: string) => void;
  heartbeatMs: number;
  /** The leases of the runs this worker trains now. */
  liveLeases(): LiveLease[];
  /** Whether the server accepts this host's liveness heartbeats now (then the pool is asked less often). */
  hostConfirmed?: () => boolean;
}

/**
 * One worker process's membership of the pool: its registration (signed afresh each time it is
 * sent, so a pool that lost its state can verify it again), a watch on the pool, and the farewell
 * when the worker stops. The pool hears nothing from a live host: its liveness is judged by its
 * liveness workflow (host-liveness.ts) from this worker's keepHostAlive activity.
 */
export class PoolMembership {
  private content: HostRegistration;
  private digest: string;
  private watch: NodeJS.Timeout | undefined;
  private watchInFlight: Promise<unknown> | undefined;
  private stopped = false;
  /** When the pool last said how it holds this host, and the chain of pool runs seen since. */
  private askedAt = 0;
  private poolChain: string | undefined;
  private readonly pool;
  /** The same pool, asked so that a closed run (terminated by hand) is refused rather than answered. */
  private readonly openPool;
  /** The watch is the worker's link to the server: its operator hears when that link breaks and heals. */
  private readonly serverLink: ServerLink;

  constructor(
    private readonly options: MembershipOptions,
    content: HostRegistration,
  ) {
    this.content = content;
    this.digest = contentDigest(content);
    this.pool = options.client.workflow.getHandle(POOL_WORKFLOW_ID);
    this.openPool = new WorkflowClient({
      connection: options.client.connection,
      namespace: options.client.options.namespace,
      dataConverter: options.client.options.dataConverter,
      queryRejectCondition: 'NOT_OPEN',
    }).getHandle(POOL_WORKFLOW_ID);
    this.serverLink = new ServerLink(`expctl worker ${content.host}`, serverAddressOf(options.client), options.log);
  }

  get incarnation(): string {
    return this.content.incarnation!;
  }

  private registration(): HostRegistration {
    return {
      ...this.content,
      authorization: signRequest(this.options.credential, {
        action: 'register_host',
        target: this.content.host,
        digest: this.digest,
      }),
    };
  }

  /** Registers this host, starting the pool first where there is none. */
  register(): Promise<unknown> {
    return registerStartingPool(this.options.client, this.registration());
  }

  /**
   * Asks the pool every heartbeatMs how it holds this host (a query: no history). A pool that took
   * this incarnation offline (or lost its state) takes it back only through a registration, which
   * this sends; a pool that is gone is started again. One question in flight at a time: during a
   * server outage they would pile up, each retrying.
   */
  watchPool(): void {
    this.watch = setInterval(() => {
      if (this.watchInFlight) return;
      const quietly =
        (this.options.hostConfirmed?.() ?? false) && Date.now() - this.askedAt < CONFIRMED_HOST_ASKS_EVERY_MS;
      // A deadline: across a cut link a call would otherwise hang, and the operator never hear of it.
      this.watchInFlight = this.options.client
        .withDeadline(Date.now() + WATCH_DEADLINE_MS, () => (quietly ? this.samePool() : this.askPool()))
        .then(
          (held) => (held ? undefined : this.register()),
          (error: Error) => {
            if (!(error instanceof WorkflowNotFoundError || error instanceof QueryRejectedError)) throw error;
            return this.recreatePool();
          },
        )
        .then(
          () => this.serverLink.reached(),
          (error: Error) => {
            if (isConnectionError(error)) this.serverLink.failed(error);
            else this.options.log(`expctl worker: pool watch failed: ${error.message}`);
          },
        )
        .finally(() => (this.watchInFlight = undefined));
    }, this.options.heartbeatMs);
  }

  /** Asks the pool whether it holds this incarnation online (if not, it is registered again). */
  private async askPool(): Promise<boolean> {
    const held = await this.openPool.query(hostRegistrationQuery, this.content.host);
    this.askedAt = Date.now();
    return held.online && held.incarnation === this.content.incarnation;
  }

  /**
   * Looks, at the server, that the pool's run is still open and of the same chain (continued as
   * new, not started anew): a pool started again after it was gone is asked at once.
   */
  private async samePool(): Promise<boolean> {
    const description = await this.pool.describe();
    if (description.status.name !== 'RUNNING')
      throw new WorkflowNotFoundError('the pool is closed', POOL_WORKFLOW_ID, undefined);
    const chain = description.raw.workflowExecutionInfo?.firstRunId ?? undefined;
    const known = this.poolChain;
    this.poolChain = chain;
    return known === undefined || chain === known ? true : this.askPool();
  }

  stopWatching(): void {
    clearInterval(this.watch);
  }

  /**
   * Waits until the pool has this incarnation online, or has refused it (fatal). While the pool
   * cannot answer (server or orchestrator away) it keeps asking: the watch registers it later.
   */
  async accepted(): Promise<void> {
    const { host, incarnation } = this.content;
    for (let delay = 100; !this.stopped; delay = Math.min(delay * 2, 2000)) {
      const state = await this.pool.query(hostRegistrationQuery, host).catch(() => undefined);
      if (state?.online && state.incarnation === incarnation) return;
      const refusal = state?.refusal;
      if (refusal && refusal.incarnation === incarnation) throw new RegistrationRefusedError(refusal.reason);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /** Stops the watch and tells the pool this incarnation is leaving. */
  async leave(): Promise<void> {
    this.stopped = true;
    clearInterval(this.watch);
    await this.watchInFlight;
    const farewell = { host: this.content.host, incarnation: this.content.incarnation };
    const authorization = signRequest(this.options.credential, {
      action: 'register_host',
      target: this.content.host,
      digest: contentDigest(farewell),
    });
    await this.pool.signal(deregisterHostSignal, { ...farewell, authorization }).catch(() => undefined);
  }

  /**
   * The pool is gone (terminated by hand): started again with this host's registration, which
   * now names the leases of the runs it trains, so the new pool holds them again. Every worker
   * does this at its next watch; the first one's start creates it, the others only register.
   */
  private async recreatePool(): Promise<void> {
    const liveLeases = this.options.liveLeases();
    this.content = {
      ...this.content,
      liveRuns: [...new Set([...(this.content.liveRuns ?? []), ...liveLeases.map((l) => l.experimentId)])],
      liveLeases,
    };
    this.digest = contentDigest(this.content);
    this.options.log(
      `expctl worker: the pool was gone; started it again with ${this.content.host}'s registration and ${liveLeases.length} live lease(s)`,
    );
    await this.register();
  }
}
