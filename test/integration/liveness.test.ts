import type { ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { hostLostSignal, poolStateQuery } from '../../src/workflows/definitions.js';
import { livenessWorkflowId } from '../../src/workflows/host-liveness.js';
import { OwnServer } from '../helpers/own-server.js';
import { waitFor } from '../helpers/wait.js';
import { configurePool, startStack, type TestStack } from '../helpers/stack.js';
import { startWorkerProcess } from '../helpers/worker-process.js';

/** The pool's heartbeat limit here (each host's silence limit: its hosts report every second). */
const LIMIT_MS = 6_000;

/** A server of this file's own: one test stops and starts it on the same database and port. */
let server: OwnServer;
let stack: TestStack;
let victim: ResultPromise | undefined;

beforeAll(async () => {
  server = await OwnServer.start('liveness');
  // Three hosts in this process, each reporting every second (the stack's workers do).
  stack = await startStack({ name: 'liveness', address: server.address, cpuSlots: 1 });
  await stack.addGpuWorker({ host: 'second', cpuSlots: 1 });
  await stack.addGpuWorker({ host: 'third', cpuSlots: 1 });
  await configurePool(stack.client, { heartbeatLimitMs: LIMIT_MS });
}, 180_000);
afterAll(async () => {
  victim?.kill('SIGKILL');
  await stack?.stop();
  await server?.remove();
});

const pool = () => stack.client.workflow.getHandle(POOL_WORKFLOW_ID);

/** The host's incarnation as the pool holds it, and the workflow that watches it. */
async function livenessOf(host: string) {
  const entry = (await pool().query(poolStateQuery)).hosts[host];
  if (!entry?.incarnation) throw new Error(`${host} has no registered incarnation`);
  return { entry, handle: stack.client.workflow.getHandle(livenessWorkflowId(host, entry.incarnation)) };
}

/** When the host's keepHostAlive last heartbeated, as the server has it (0 when it has none pending). */
async function lastHeartbeatOf(host: string): Promise<number> {
  const { handle } = await livenessOf(host);
  const description = await handle.describe();
  if (description.status.name !== 'RUNNING') return 0;
  const pending = (description.raw.pendingActivities ?? []).find((a) => a.activityType?.name === 'keepHostAlive');
  const seconds = pending?.lastHeartbeatTime?.seconds;
  return seconds ? Number(seconds.toString()) * 1000 + Math.floor((pending!.lastHeartbeatTime!.nanos ?? 0) / 1e6) : 0;
}

const HOSTS = ['testhost', 'second', 'third'];

/** Every host online and its keepHostAlive heartbeating after `since`. */
async function allAliveSince(since: number): Promise<boolean> {
  const state = await pool().query(poolStateQuery);
  if (!HOSTS.every((host) => state.hosts[host]?.online)) return false;
  const beats = await Promise.all(HOSTS.map(lastHeartbeatOf));
  return beats.every((at) => at > since);
}

describe('host liveness outside the pool', () => {
  it("leaves an idle pool's history as it is while its hosts live", async () => {
    const ready = Date.now();
    await waitFor(() => allAliveSince(ready), 30_000);
    const before = (await pool().describe()).historyLength;
    const startedAt = Date.now();
    const windowMs = 30_000;
    // The window is the measurement: the hosts keep heartbeating (to their liveness workflows) all along.
    await waitFor(async () => Date.now() - startedAt >= windowMs, windowMs + 5_000);
    await waitFor(() => allAliveSince(startedAt + windowMs - 3_000), 10_000);
    const after = (await pool().describe()).historyLength;
    const perHostPerMinute = ((after - before) / HOSTS.length) * (60_000 / (Date.now() - startedAt));
    console.log(
      `idle pool, ${HOSTS.length} live hosts heartbeating every 1 s for ${((Date.now() - startedAt) / 1000).toFixed(0)} s: ` +
        `pool history ${before} -> ${after} events (+${after - before}; ${perHostPerMinute.toFixed(1)} per host per minute)`,
    );
    expect(after - before).toBeLessThanOrEqual(2);
    const state = await pool().query(poolStateQuery);
    for (const host of HOSTS) expect(state.hosts[host]).toMatchObject({ online: true, offlineReason: null });
  }, 120_000);

  it('declares a SIGKILLed worker lost within the limit + 5 s, with the reason the pool always gave', async () => {
    victim = (await startWorkerProcess(stack, 'victim', { args: ['--heartbeat', '1'] })).child;
    const limitMs = LIMIT_MS;
    await waitFor(async () => (await lastHeartbeatOf('victim')) > 0, 30_000);
    const { entry, handle } = await livenessOf('victim');
    const killedAt = Date.now();
    victim.kill('SIGKILL');
    await victim;
    victim = undefined;
    await waitFor(async () => (await pool().query(poolStateQuery)).hosts.victim?.online === false, limitMs + 15_000);
    const elapsedMs = Date.now() - killedAt;
    const lost = (await pool().query(poolStateQuery)).hosts.victim!;
    console.log(
      `worker SIGKILLed: offline after ${(elapsedMs / 1000).toFixed(1)} s (limit ${limitMs / 1000} s): ${lost.offlineReason}`,
    );
    expect(lost.offlineReason).toMatch(
      /^no heartbeat from victim for \d+s \(last at [\dT:.-]+Z\); the worker is lost$/,
    );
    expect(lost.incarnation).toBe(entry.incarnation);
    expect(elapsedMs).toBeLessThanOrEqual(limitMs + 5_000);
    // Its watch ended with it; the live hosts are untouched.
    expect((await handle.describe()).status.name).toBe('COMPLETED');
    const state = await pool().query(poolStateQuery);
    for (const host of HOSTS) expect(state.hosts[host]?.online).toBe(true);
  }, 120_000);

  it("does not let a restarted worker keep its predecessor alive, nor its predecessor's watch take it offline", async () => {
    victim = (await startWorkerProcess(stack, 'phoenix', { args: ['--heartbeat', '1'] })).child;
    await waitFor(async () => (await lastHeartbeatOf('phoenix')) > 0, 30_000);
    const before = await livenessOf('phoenix');
    victim.kill('SIGKILL');
    await victim;
    // The same host and work directory, a new incarnation: it registers at once.
    victim = (await startWorkerProcess(stack, 'phoenix', { args: ['--heartbeat', '1'] })).child;
    const after = await livenessOf('phoenix');
    expect(after.entry.incarnation).not.toBe(before.entry.incarnation);
    // The old watch times out, and its probe is answered by the new worker, which is not the incarnation it watches.
    await waitFor(async () => (await before.handle.describe()).status.name === 'COMPLETED', LIMIT_MS + 15_000);
    const since = Date.now();
    await waitFor(async () => (await lastHeartbeatOf('phoenix')) > since, 10_000);
    expect((await pool().query(poolStateQuery)).hosts.phoenix).toMatchObject({
      online: true,
      incarnation: after.entry.incarnation,
      offlineReason: null,
    });
    expect((await after.handle.describe()).status.name).toBe('RUNNING');
    victim.kill('SIGKILL');
    await victim;
    victim = undefined;
  }, 120_000);

  it('registers again a live worker that its pool took offline, and keeps watching it', async () => {
    const { entry, handle } = await livenessOf('second');
    await pool().signal(hostLostSignal, { host: 'second', reason: 'taken offline by the test' });
    await waitFor(async () => (await pool().query(poolStateQuery)).hosts.second?.online === false, 10_000);
    // The worker's watch sees it offline within a period or two and sends its registration again.
    await waitFor(async () => (await pool().query(poolStateQuery)).hosts.second?.online === true, 15_000);
    const back = (await pool().query(poolStateQuery)).hosts.second!;
    expect(back.incarnation).toBe(entry.incarnation);
    expect(back.offlineReason).toBeNull();
    expect(back.registeredAt).toBeGreaterThan(entry.registeredAt);
    expect(stack.workerLog.some((line) => line.includes('pool watch failed'))).toBe(false);
    // The same watch goes on (the incarnation did not change), its host still heartbeating to it.
    const since = Date.now();
    await waitFor(async () => (await lastHeartbeatOf('second')) > since, 10_000);
    expect((await handle.describe()).status.name).toBe('RUNNING');
    // A loss reported for an incarnation the pool no longer has changes nothing.
    await pool().signal(hostLostSignal, { host: 'second', incarnation: 'an-older-one', reason: 'stale news' });
    // An update after it returns once the pool has handled everything sent before.
    await configurePool(stack.client, { heartbeatLimitMs: LIMIT_MS });
    const after = await pool().query(poolStateQuery);
    expect(after.hosts.second).toMatchObject({ online: true, offlineReason: null });
  }, 60_000);

  it('does not declare live hosts lost when the server was away longer than their limit', async () => {
    const watches = await Promise.all(HOSTS.map(async (host) => (await livenessOf(host)).handle.workflowId));
    const stoppedAt = Date.now();
    await server.down();
    // Away for longer than the limit and its slack: every heartbeat times out when it returns.
    const outageMs = 15_000;
    await waitFor(async () => Date.now() - stoppedAt >= outageMs, outageMs + 5_000);
    await server.up();
    const back = Date.now();
    // Each host heartbeats again to the same watch (a fresh limit, not a probe it could not yet answer).
    await waitFor(() => allAliveSince(back), 60_000);
    // Past the limit and the probe after the server came back: nothing was declared lost meanwhile.
    await waitFor(async () => Date.now() - back >= LIMIT_MS + 5_000, 20_000);
    const state = await pool().query(poolStateQuery);
    for (const host of HOSTS) expect(state.hosts[host]).toMatchObject({ online: true, offlineReason: null });
    expect(await Promise.all(HOSTS.map(async (host) => (await livenessOf(host)).handle.workflowId))).toEqual(watches);
    console.log(
      `server away ${((back - stoppedAt) / 1000).toFixed(0)} s (limit ${LIMIT_MS / 1000} s): ${HOSTS.length} hosts still online, same watches`,
    );
  }, 180_000);
});
