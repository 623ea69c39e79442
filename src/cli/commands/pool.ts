import type { Client } from '@temporalio/client';
import { drainTarget, NoFleetError, poolPlan, poolState, type PoolPlan } from '../../client/fleet.js';
import { PoolRepairError, repairPool, type PoolRepair } from '../../client/pool-repair.js';
import type { PoolSnapshot } from '../../workflows/definitions.js';
import type { DrainOutcome } from '../../domain/fleet.js';
import { poolLoads, runningLeasesOf, tagShares } from '../../domain/fair-share.js';
import { roughDuration, servingOrder } from '../../domain/placement.js';
import { gpusOf } from '../../domain/request.js';
import { connectClient, dataConverter } from '../../temporal/connection.js';
import { asRefusal } from '../refusal.js';
import { CliError, formatTable, printJson, safeText, wantsJson } from '../output.js';

/** The pool's state, or the CLI's error saying no worker has joined yet. */
export async function fleetPool(client: Client): Promise<PoolSnapshot> {
  try {
    return await poolState(client);
  } catch (error) {
    if (error instanceof NoFleetError) throw new CliError(error.message);
    throw error;
  }
}

export async function poolCommand(options: { json?: boolean }): Promise<void> {
  const client = await connectClient();
  const pool = await fleetPool(client);
  const plan = await poolPlan(client);
  const now = Date.now();
  const shares = tagShares(pool.usage ?? {}, runningLeasesOf(pool.slots), now);
  const queue = servingOrder(pool.queue, poolLoads(pool, now));
  if (wantsJson(options)) return printJson({ ...pool, shares, reservations: plan.reservations, waiting: plan.waiting });
  const rows = pool.slots.map((entry) => {
    const host = pool.hosts[entry.slot.host];
    const state = !host?.online ? 'offline' : entry.draining ? 'draining' : entry.lease ? 'leased' : 'idle';
    return [
      entry.slot.host,
      entry.slot.index,
      entry.slot.acceleratorClass,
      entry.slot.memoryMb,
      state,
      entry.lease?.experimentId,
      // The pool hears from a live host only when it registers; its liveness workflow judges the rest.
      host ? new Date(host.registeredAt).toISOString() : null,
      // The run its worker hands the GPU to when the current one exits (absent: none lined up).
      entry.next?.lease.experimentId,
    ];
  });
  console.log(formatTable(['host', 'index', 'class', 'memory_mb', 'state', 'experiment', 'registered', 'next'], rows));
  if (shares.length > 0) {
    console.log(`\nfair share (recent GPU time; use an hour old counts half):`);
    console.log(
      formatTable(
        ['tag', 'running', 'gpu_seconds', 'share'],
        shares.map((s) => [s.tag, s.running, s.gpuSeconds.toFixed(1), `${(s.share * 100).toFixed(0)}%`]),
      ),
    );
  }
  if (pool.queue.length > 0) {
    console.log(`\nqueue (${pool.queue.length}), in the order it is served:`);
    console.log(
      formatTable(
        ['position', 'experiment', 'tag', 'class', 'gpus', 'memory_mb', 'priority'],
        queue.map((r, i) => [
          i + 1,
          r.experimentId,
          r.tag ?? null,
          r.requirements.acceleratorClass,
          gpusOf(r.requirements),
          r.requirements.gpuMemoryMb,
          r.priority,
        ]),
      ),
    );
  }
  const planned = planText(plan);
  if (planned) console.log(planned);
}

/**
 * The GPUs held for waiting runs and why each run waits, as an operator reads them ('' when
 * nothing waits). A later run may use reserved GPUs only if its lease surely ends before the
 * reservation's start.
 */
export function planText(plan: PoolPlan): string {
  const lines: string[] = [];
  if (plan.reservations.length > 0) {
    lines.push(`\nreservations (${plan.reservations.length}): GPUs held for waiting runs`);
    lines.push(
      formatTable(
        ['experiment', 'host', 'gpus', 'slots', 'starts_by'],
        plan.reservations.map((r) => [
          r.experimentId,
          r.host,
          r.gpus,
          r.slotIds.join(','),
          r.startsBy === null
            ? 'unknown'
            : `${new Date(r.startsBy).toISOString()} (in ${roughDuration(r.startsBy - plan.at)})`,
        ]),
      ),
    );
  }
  if (plan.waiting.length > 0) {
    lines.push(`\nwhy each waits:`);
    for (const waiting of plan.waiting) lines.push(safeText(`  ${waiting.experimentId}: ${waiting.why}`));
  }
  return lines.join('\n');
}

/** What a drain or undrain did, as an operator reads it. */
export function drainText(outcome: DrainOutcome): string {
  const verb = outcome.drained ? 'drained' : 'undrained';
  const list = (ids: string[]) => ids.map((id) => safeText(id)).join(', ');
  const lines = [
    outcome.changed.length > 0 ? `${verb} ${list(outcome.changed)}` : `nothing changed on ${safeText(outcome.target)}`,
  ];
  if (outcome.unchanged.length > 0) lines.push(`already ${verb}: ${list(outcome.unchanged)}`);
  for (const held of outcome.leased)
    lines.push(
      `still leased: ${safeText(held.slotId)} runs ${safeText(held.experimentId)}${outcome.drained ? ' (it finishes; no new lease there)' : ''}`,
    );
  if (outcome.drained && outcome.leased.length === 0) lines.push('no run holds a lease there');
  return lines.join('\n');
}

export async function drainCommand(
  target: string,
  drained: boolean,
  options: { reason?: string; json?: boolean },
): Promise<void> {
  const client = await connectClient();
  const pool = await fleetPool(client);
  const matches = pool.slots.filter((entry) => entry.slot.host === target || entry.slot.slotId === target);
  if (matches.length === 0) throw new CliError(`no host or slot named ${safeText(target)} in the pool`);
  const change = { target, drained, reason: options.reason ?? 'operator' };
  let outcome: DrainOutcome;
  try {
    outcome = await drainTarget(client, change);
  } catch (error) {
    throw asRefusal(error);
  }
  if (wantsJson(options)) return printJson(outcome);
  console.log(drainText(outcome));
}

/** What a repair did, as an operator reads it. */
export function repairText(repair: PoolRepair): string {
  if (!repair.stalled) return `the pool is not stalled (run ${repair.runId}): nothing to repair`;
  const lines = [
    `the pool was stalled: ${safeText(repair.failure ?? '')}`,
    `reset run ${repair.runId} to its last good workflow task (event ${repair.resetToEventId}); it serves as run ${repair.repairedRunId}`,
    `gave back ${repair.resent} signal(s); dropped ${repair.dropped.length}`,
  ];
  for (const dropped of repair.dropped)
    lines.push(
      `dropped ${safeText(dropped.signal)} (event ${dropped.eventId}, sent by ${safeText(dropped.sentBy ?? 'unknown')}): ${safeText(dropped.reason)}`,
    );
  return lines.join('\n');
}

export async function repairPoolCommand(options: { json?: boolean }): Promise<void> {
  const client = await connectClient();
  let repair: PoolRepair;
  try {
    repair = await repairPool(client, await dataConverter());
  } catch (error) {
    if (error instanceof PoolRepairError) throw new CliError(`pool repair: ${error.message}`);
    throw error;
  }
  if (wantsJson(options)) return printJson(repair);
  console.log(repairText(repair));
}
