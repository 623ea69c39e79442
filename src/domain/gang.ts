import type { Slot } from './fleet.js';

/**
 * Which K GPUs of one host a gang lease takes, by NVLink island and NUMA node, and how that set
 * reads in a placement record. Pure: placement.ts decides with it, tests check it.
 *
 * The rule, among the host's free capable GPUs: one NVLink island that holds K (the island with
 * the fewest free GPUs that still fits, so whole islands stay free for larger requests), else one
 * NUMA node that holds K (the node with the fewest free that fits), else the fewest islands. A GPU
 * whose host reported no topology is an island of its own, on an unknown NUMA node.
 */

/** How close together a chosen set is: one island beats one NUMA node beats several islands. */
export type SetTier = 'island' | 'numa' | 'islands';

export const TIER_RANK: Record<SetTier, number> = { island: 0, numa: 1, islands: 2 };

export interface ChosenSet<S extends Slot = Slot> {
  /** The GPUs, in topology order: by island, then index. */
  slots: S[];
  tier: SetTier;
  /** How many islands the set spans. */
  islands: number;
  /**
   * Free GPUs in the island (tier island) or NUMA node (tier numa) the set was taken from, or on
   * the host (tier islands): fewer means a tighter fit.
   */
  fitFree: number;
  /** The NUMA node the set was kept inside (tier numa). */
  numaNode?: number;
}

interface Island<S extends Slot> {
  key: string;
  /** Free members, by index. */
  slots: S[];
}

/** The island a GPU belongs to: its NVLink island, or itself where no topology is known. */
export function islandKey(slot: Slot): string {
  return slot.nvlinkIsland !== undefined ? `nv${slot.nvlinkIsland}` : `gpu${slot.index}`;
}

/** Topology order: by island (islands numbered by their first GPU), then index. */
export function topologyOrder(a: Slot, b: Slot): number {
  return (a.nvlinkIsland ?? a.index) - (b.nvlinkIsland ?? b.index) || a.index - b.index;
}

function islandsOf<S extends Slot>(slots: S[]): Island<S>[] {
  const byKey = new Map<string, S[]>();
  for (const slot of slots) {
    const key = islandKey(slot);
    const members = byKey.get(key);
    if (members) members.push(slot);
    else byKey.set(key, [slot]);
  }
  return [...byKey].map(([key, members]) => ({ key, slots: members.sort((a, b) => a.index - b.index) }));
}

/** Islands smallest first (best fit), ties by their first GPU. */
function bestFitFirst<S extends Slot>(a: Island<S>, b: Island<S>): number {
  return a.slots.length - b.slots.length || topologyOrder(a.slots[0]!, b.slots[0]!);
}

/**
 * K GPUs over the fewest islands: whole islands, largest first, until the rest fits in one; the
 * rest comes from the smallest island that holds it.
 */
function fewestIslands<S extends Slot>(islands: Island<S>[], k: number): { slots: S[]; islands: number } {
  const left = [...islands].sort(bestFitFirst);
  const taken: S[] = [];
  let count = 0;
  while (taken.length < k) {
    const rest = k - taken.length;
    const fits = left.findIndex((island) => island.slots.length >= rest);
    const at = fits >= 0 ? fits : left.length - 1;
    const [island] = left.splice(at, 1) as [Island<S>];
    taken.push(...island.slots.slice(0, rest));
    count++;
  }
  return { slots: taken, islands: count };
}

/**
 * The set a gang of K takes from these free GPUs of one host and class (all of one host), or null
 * when fewer than K are free.
 */
export function chooseSet<S extends Slot>(free: S[], k: number): ChosenSet<S> | null {
  if (k < 1 || free.length < k) return null;
  const islands = islandsOf(free);
  const island = islands.filter((candidate) => candidate.slots.length >= k).sort(bestFitFirst)[0];
  if (island) {
    return { slots: island.slots.slice(0, k), tier: 'island', islands: 1, fitFree: island.slots.length };
  }
  const byNuma = new Map<number, S[]>();
  for (const slot of free) {
    if (slot.numaNode === undefined || slot.numaNode === null) continue;
    const members = byNuma.get(slot.numaNode);
    if (members) members.push(slot);
    else byNuma.set(slot.numaNode, [slot]);
  }
  const numa = [...byNuma]
    .filter(([, members]) => members.length >= k)
    .sort(([a, x], [b, y]) => x.length - y.length || a - b)[0];
  if (numa) {
    const [node, members] = numa;
    const set = fewestIslands(islandsOf(members), k);
    return {
      slots: set.slots.sort(topologyOrder),
      tier: 'numa',
      islands: set.islands,
      fitFree: members.length,
      numaNode: node,
    };
  }
  const set = fewestIslands(islands, k);
  return { slots: set.slots.sort(topologyOrder), tier: 'islands', islands: set.islands, fitFree: free.length };
}

/** GPU indices as ranges: [0,1,2,3,6] → "0-3,6". */
export function indexRanges(indices: number[]): string {
  const sorted = [...indices].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(j > i ? `${sorted[i]}-${sorted[j]}` : `${sorted[i]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** "NUMA 0", "NUMA 0 and 1", "NUMA unknown": the NUMA nodes a set of GPUs is attached to. */
function numaText(slots: Slot[]): string {
  const nodes = [...new Set(slots.map((slot) => slot.numaNode ?? null))];
  const known = nodes.filter((node): node is number => node !== null).sort((a, b) => a - b);
  const unknown = nodes.includes(null) ? (known.length > 0 ? ' (and unknown)' : 'unknown') : '';
  return `NUMA ${known.join(' and ')}${unknown}`;
}

/**
 * The islands and NUMA nodes a set spans, readable: "island 0 of host-a (GPUs 0-3), NUMA 0";
 * "islands 0 (GPUs 2-3) and 1 (GPUs 4-5) of host-a, NUMA 0"; GPUs without topology are listed
 * as such.
 */
export function describeSet(slots: Slot[]): string {
  const host = slots[0]?.host ?? '';
  const linked = islandsOf(slots.filter((slot) => slot.nvlinkIsland !== undefined)).sort((a, b) =>
    topologyOrder(a.slots[0]!, b.slots[0]!),
  );
  const solo = slots.filter((slot) => slot.nvlinkIsland === undefined).map((slot) => slot.index);
  const parts: string[] = [];
  if (linked.length === 1 && solo.length === 0) {
    const only = linked[0]!.slots;
    return `island ${only[0]!.nvlinkIsland} of ${host} (GPUs ${indexRanges(only.map((s) => s.index))}), ${numaText(slots)}`;
  }
  if (linked.length > 0) {
    const each = linked.map(
      (island) => `${island.slots[0]!.nvlinkIsland} (GPUs ${indexRanges(island.slots.map((s) => s.index))})`,
    );
    parts.push(`${linked.length === 1 ? 'island' : 'islands'} ${joinAnd(each)}`);
  }
  if (solo.length > 0) parts.push(`GPUs ${indexRanges(solo)} (no NVLink topology reported)`);
  return `${parts.join(' and ')} of ${host}, ${numaText(slots)}`;
}

function joinAnd(items: string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/** Why this set, for the placement record: its tier and how tightly it fits. */
export function whySet(set: ChosenSet, k: number): string {
  const host = set.slots[0]!.host;
  if (set.slots.every((slot) => slot.nvlinkIsland === undefined && (slot.numaNode ?? null) === null)) {
    return `${k} GPU${k === 1 ? '' : 's'} of ${host} by index: it reported no NVLink or NUMA topology`;
  }
  if (set.tier === 'island') {
    const island = set.slots[0]!.nvlinkIsland;
    return island === undefined
      ? `GPU ${set.slots[0]!.index} of ${host}`
      : `one NVLink island: island ${island} of ${host} has ${set.fitFree} free, the fewest of its islands that hold ${k}`;
  }
  if (set.tier === 'numa') {
    return `no NVLink island of ${host} has ${k} free; one NUMA node: node ${set.numaNode} has ${set.fitFree} free, the fewest that hold ${k}, over ${set.islands} island${set.islands === 1 ? '' : 's'}`;
  }
  return `neither one NVLink island nor one NUMA node of ${host} has ${k} free: the fewest islands that hold ${k} (${set.islands})`;
}
