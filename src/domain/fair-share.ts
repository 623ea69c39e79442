/**
 * Fair share of the fleet between tags (one campaign, one agent each). Pure and deterministic:
 * the pool orders waiting requests with it, `expctl pool` shows it, tests check it.
 *
 * The rule: waiting requests go by priority (higher first); within a priority, the tag with the
 * least recent GPU time goes first; within a tag, first come first served. A tag's recent GPU
 * time is the GPU-seconds of its finished leases, halved for every FAIR_SHARE_HALF_LIFE_MS since
 * they ended, plus the time its current leases have run (each counts at least one second from its
 * grant, so two slots granted in one pass go to two different tags when both wait). A lease of K
 * GPUs counts K GPU-seconds per second, running and finished.
 */

/** How fast past use is forgotten: use an hour ago weighs half as much as use now. */
export const FAIR_SHARE_HALF_LIFE_MS = 60 * 60 * 1000;

/** A tag's finished GPU time, decayed to `at`. */
export interface TagUsage {
  gpuSeconds: number;
  at: number;
}

/** A lease still held, as the share counts it. */
export interface RunningLease {
  tag: string;
  grantedAt: number;
  /** Every GPU of a gang lease is one running lease here (K GPU-seconds per second); the id tells them apart from runs. */
  leaseId?: string;
}

/** Finished GPU-seconds decayed from `usage.at` to `now`. */
export function decayedSeconds(usage: TagUsage | undefined, now: number): number {
  if (!usage) return 0;
  return usage.gpuSeconds * 0.5 ** (Math.max(0, now - usage.at) / FAIR_SHARE_HALF_LIFE_MS);
}

/** The usage after a lease of the tag that ran `seconds` ended at `now`. */
export function addUsage(usage: TagUsage | undefined, seconds: number, now: number): TagUsage {
  return { gpuSeconds: decayedSeconds(usage, now) + Math.max(0, seconds), at: now };
}

/** Seconds a running lease counts for now: its elapsed time, at least one second. */
export function runningSeconds(lease: RunningLease, now: number): number {
  return Math.max(1, (now - lease.grantedAt) / 1000);
}

/**
 * The leases still held by tagged runs, among a pool's slot entries: one per GPU, so a gang of K
 * counts K GPU-seconds per second.
 */
export function runningLeasesOf(
  entries: { lease: { tag?: string; grantedAt: number; leaseId?: string } | null }[],
): RunningLease[] {
  return entries.flatMap(({ lease }) =>
    lease?.tag !== undefined
      ? [
          {
            tag: lease.tag,
            grantedAt: lease.grantedAt,
            ...(lease.leaseId !== undefined ? { leaseId: lease.leaseId } : {}),
          },
        ]
      : [],
  );
}

/** Each tag's recent GPU time now (finished, decayed, plus running), for every tag that has any. */
export function tagLoads(usage: Record<string, TagUsage>, running: RunningLease[], now: number): Map<string, number> {
  const loads = new Map<string, number>();
  for (const [tag, entry] of Object.entries(usage)) loads.set(tag, decayedSeconds(entry, now));
  for (const lease of running) loads.set(lease.tag, (loads.get(lease.tag) ?? 0) + runningSeconds(lease, now));
  return loads;
}

/** A pool's tag loads now, from its usage and its slots' leases (what the grant loop orders by). */
export function poolLoads(
  pool: { usage?: Record<string, TagUsage>; slots: { lease: { tag?: string; grantedAt: number } | null }[] },
  now: number,
): Map<string, number> {
  return tagLoads(pool.usage ?? {}, runningLeasesOf(pool.slots), now);
}

export interface TagShare {
  tag: string;
  /** Recent GPU-seconds (decayed finished use plus running leases). */
  gpuSeconds: number;
  /** Fraction of all tags' recent GPU-seconds (0 when nothing has run). */
  share: number;
  /** Runs holding leases now (a gang of K GPUs is one run). */
  running: number;
}

/** Every tag's share of the fleet's recent GPU time, largest first (`expctl pool`). */
export function tagShares(usage: Record<string, TagUsage>, running: RunningLease[], now: number): TagShare[] {
  const loads = tagLoads(usage, running, now);
  const total = [...loads.values()].reduce((sum, value) => sum + value, 0);
  return [...loads.entries()]
    .map(([tag, gpuSeconds]) => ({
      tag,
      gpuSeconds,
      share: total > 0 ? gpuSeconds / total : 0,
      running: runsOf(running.filter((lease) => lease.tag === tag)),
    }))
    .sort((a, b) => b.gpuSeconds - a.gpuSeconds || a.tag.localeCompare(b.tag));
}

/** Distinct runs among running leases: the GPUs of one gang share a lease id. */
function runsOf(leases: RunningLease[]): number {
  const ids = new Set(leases.flatMap((lease) => (lease.leaseId !== undefined ? [lease.leaseId] : [])));
  return ids.size + leases.filter((lease) => lease.leaseId === undefined).length;
}

/** Forgets tags whose decayed use is below a millisecond, so the pool's state stays small. */
export function pruneUsage(usage: Record<string, TagUsage>, now: number): Record<string, TagUsage> {
  return Object.fromEntries(Object.entries(usage).filter(([, entry]) => decayedSeconds(entry, now) >= 0.001));
}
