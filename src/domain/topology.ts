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

export const TOPOLOGY_COMMAND = 'nvidia-smi topo -m';

/** The columns `nvidia-smi topo -m` prints after the device columns, in the order it prints them. */
const TRAILING_COLUMNS = ['CPU Affinity', 'NUMA Affinity', 'GPU NUMA ID'] as const;

/** What a host's topology is when it cannot be read: every GPU its own island, NUMA unknown. */
export function unavailableTopology(problem: string): HostTopology {
  return { source: 'unavailable', islands: [], numaNodes: {}, problem };
}

/**
 * Parses the matrix `nvidia-smi topo -m` prints: tab- or space-separated (as pasted), with NIC or
 * mlx5 columns and rows, legends, `N/A` cells and the ANSI codes newer drivers put around the header.
 * Islands are the connected components of the GPU pairs linked by `NV#`; the NUMA node of a GPU is
 * its "NUMA Affinity" (a single node; N/A or a range of nodes is unknown). Output it does not
 * understand gives an unavailable topology naming why, never an exception.
 */
export function parseTopologyMatrix(output: string): HostTopology {
  try {
    return readMatrix(output);
  } catch (error) {
    if (error instanceof TopologyFormatError) return unavailableTopology(error.message);
    throw error;
  }
}

class TopologyFormatError extends Error {}

function readMatrix(output: string): HostTopology {
  const lines = matrixLines(output);
  const headerAt = lines.findIndex((line) => /(^|\s)GPU0(\s|$)/.test(line));
  if (headerAt < 0) throw new TopologyFormatError(`${TOPOLOGY_COMMAND} printed no GPU matrix: "${excerpt(output)}"`);
  const header = parseHeader(lines[headerAt]!);
  const rows = lines.slice(headerAt + 1).flatMap((line) => {
    const cells = line.trim().split(/\s+/);
    return /^GPU\d+$/.test(cells[0] ?? '') ? [cells] : [];
  });
  const gpus = header.gpus;
  if (rows.length !== gpus.length)
    throw new TopologyFormatError(
      `${TOPOLOGY_COMMAND} names ${gpus.length} GPU columns but has ${rows.length} GPU rows`,
    );
  const links = new UnionFind(gpus);
  const numaNodes: Record<number, number | null> = {};
  rows.forEach((cells, row) => {
    const gpu = gpus[row]!;
    if (cells[0] !== `GPU${gpu}`)
      throw new TopologyFormatError(`${TOPOLOGY_COMMAND} row ${row + 1} is ${cells[0]}, expected GPU${gpu}`);
    const values = cells.slice(1);
    if (values.length < gpus.length + header.trailing.length)
      throw new TopologyFormatError(`${TOPOLOGY_COMMAND} row GPU${gpu} has too few cells: "${cells.join(' ')}"`);
    if (values[row] !== 'X')
      throw new TopologyFormatError(`${TOPOLOGY_COMMAND} row GPU${gpu} does not mark itself X: "${cells.join(' ')}"`);
    values.slice(0, gpus.length).forEach((link, column) => {
      if (/^NV\d+$/.test(link)) links.join(gpu, gpus[column]!);
    });
    // Counted from the end: a NIC cell that ran into its neighbour (seen in real output) leaves these intact.
    const trailing = values.slice(values.length - header.trailing.length);
    const numa = header.trailing.indexOf('NUMA Affinity');
    numaNodes[gpu] = numa < 0 ? null : numaNode(trailing[numa]!);
  });
  return { source: TOPOLOGY_COMMAND, islands: links.components(), numaNodes };
}

/** The output's lines up to its legend, without ANSI escape codes or carriage returns. */
function matrixLines(output: string): string[] {
  // eslint-disable-next-line no-control-regex
  const plain = output.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');
  const lines = plain.split('\n');
  const legend = lines.findIndex((line) => /^\s*(NIC )?Legend:/.test(line));
  return (legend < 0 ? lines : lines.slice(0, legend)).filter((line) => line.trim() !== '');
}

/** The GPU indices of the header's GPU columns, and which of the trailing columns it has. */
function parseHeader(line: string): { gpus: number[]; trailing: string[] } {
  const trailing = TRAILING_COLUMNS.filter((name) => line.includes(name));
  const firstTrailing = Math.min(...trailing.map((name) => line.indexOf(name)), line.length);
  const devices = line.slice(0, firstTrailing).trim().split(/\s+/);
  const gpus: number[] = [];
  for (const device of devices) {
    const match = /^GPU(\d+)$/.exec(device);
    if (!match) break;
    gpus.push(Number(match[1]));
  }
  if (gpus.length === 0 || gpus.some((gpu, at) => at > 0 && gpu <= gpus[at - 1]!))
    throw new TopologyFormatError(`${TOPOLOGY_COMMAND} header names no GPU columns: "${line.trim()}"`);
  return { gpus, trailing };
}

/** A NUMA Affinity cell: one node, or null for N/A and for affinities spanning several nodes. */
function numaNode(cell: string): number | null {
  return /^\d+$/.test(cell) ? Number(cell) : null;
}

function excerpt(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > 120 ? `${flat.slice(0, 120)}…` : flat;
}

/** GPUs joined by links; components come out sorted, ordered by their first GPU. */
class UnionFind {
  private readonly parent = new Map<number, number>();
  constructor(members: number[]) {
    for (const member of members) this.parent.set(member, member);
  }
  private root(member: number): number {
    let at = member;
    while (this.parent.get(at) !== at) at = this.parent.get(at)!;
    return at;
  }
  join(a: number, b: number): void {
    this.parent.set(this.root(a), this.root(b));
  }
  components(): number[][] {
    const groups = new Map<number, number[]>();
    for (const member of this.parent.keys()) {
      const root = this.root(member);
      groups.set(root, [...(groups.get(root) ?? []), member]);
    }
    return [...groups.values()].map((group) => group.sort((a, b) => a - b)).sort((a, b) => a[0]! - b[0]!);
  }
}

/** Where a GPU sits in its host's topology: its island's number (its place in `islands`) and NUMA node. */
export function gpuPlacement(
  topology: HostTopology,
  index: number,
): { nvlinkIsland?: number; numaNode?: number | null } {
  if (topology.source === 'unavailable') return {};
  const island = topology.islands.findIndex((members) => members.includes(index));
  if (island < 0) return {};
  return { nvlinkIsland: island, numaNode: topology.numaNodes[index] ?? null };
}
