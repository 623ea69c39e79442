/**
 * A host's GPU topology: which GPUs NVLink joins into islands and which NUMA node each is attached
 * to, read from `nvidia-smi topo -m`. Pure: the worker parses it, placement prefers sets inside one
 * island, tests check it.
 */

export interface HostTopology {
  /** Where it came from: the command's output, or why none is known. */
  source: 'nvidia-smi topo -m' | 'unavailable';
  /** GPU indices joined by NVLink, each island sorted, islands ordered by their first GPU. */
  islands: number[][];
  /** NUMA node per GPU index (null where nvidia-smi says N/A). */
  numaNodes: Record<number, number | null>;
  /** Why the topology is unavailable (command failed, output not understood). */
  problem?: string;
}
