/**
 * How an experiment names its data, and what it is pinned to. Pure: the request schema, the
 * experiment workflow, the worker and the CLI share these rules.
 *
 * A reference is either a path under the worker's datasets root (`climbmix/train`) or a dataset
 * version: `NAME@latest` (the newest version whose gates passed, resolved once, when the
 * experiment starts) or `NAME@V` (exactly version V, which must have passed).
 */

import { DATASET_NAME_PATTERN } from './datasets.js';

const VERSIONED_REF = /^([^@]+)@(latest|[1-9][0-9]{0,8})$/;

export type DatasetRef =
  | { kind: 'path'; ref: string }
  | { kind: 'version'; ref: string; dataset: string; version: number | 'latest' };

export function parseDatasetRef(ref: string): DatasetRef {
  const match = VERSIONED_REF.exec(ref);
  if (!match || !DATASET_NAME_PATTERN.test(match[1]!)) return { kind: 'path', ref };
  const [, dataset, version] = match as unknown as [string, string, string];
  return { kind: 'version', ref, dataset, version: version === 'latest' ? 'latest' : Number(version) };
}

export function isVersionedRef(ref: string): boolean {
  return parseDatasetRef(ref).kind === 'version';
}

/** One shard of a pinned version, as the worker needs it to lay the version out. */
export interface PinnedShard {
  index: number;
  sha256: string;
  bytes: number;
  fileName: string;
}

/** A dataset version an experiment was pinned to at its start: the record keeps it, reruns reuse it. */
export interface PinnedDataset {
  /** What the request said (`NAME@latest` or `NAME@V`). */
  ref: string;
  dataset: string;
  version: number;
  /** Digest over the version's shard hashes: the version's identity. */
  manifestSha256: string;
  records: number | null;
  shards: PinnedShard[];
}

/** The directory a pinned version is laid out in, under the worker's datasets root: `NAME@V`. */
export function versionDirName(dataset: string, version: number): string {
  return `${dataset}@${version}`;
}

/**
 * The variable that gives a training script the directory of one dataset: EXPCTL_DATASET_CLIMBMIX
 * for `climbmix@3`, EXPCTL_DATASET_CLIMBMIX_TRAIN for the path `climbmix/train`.
 */
export function datasetEnvName(dataset: string): string {
  return `EXPCTL_DATASET_${dataset.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** The name a reference gives the script its directory under: a version's dataset name, else the path itself. */
export function datasetVariableKey(ref: string): string {
  const parsed = parseDatasetRef(ref);
  return parsed.kind === 'version' ? parsed.dataset : ref;
}

/**
 * Why these references cannot each have a variable of their own (two that map to one
 * EXPCTL_DATASET_NAME, such as `a-b` and `a_b`, or two versions of one dataset); null when they can.
 */
export function datasetVariableClash(refs: readonly string[]): string | null {
  const seen = new Map<string, string>();
  for (const ref of refs) {
    const variable = datasetEnvName(datasetVariableKey(ref));
    const earlier = seen.get(variable);
    if (earlier !== undefined && earlier !== ref)
      return `datasets ${earlier} and ${ref} would both be handed to the script as ${variable}: name each dataset once, under names that differ in letters or digits`;
    seen.set(variable, ref);
  }
  return null;
}

/**
 * What a training script is told: EXPCTL_DATASETS (JSON, name → directory), one
 * EXPCTL_DATASET_NAME per dataset, and EXPCTL_DATASET_DIR when there is exactly one.
 */
export function datasetVariables(dirs: Record<string, string>): Record<string, string> {
  const names = Object.keys(dirs);
  if (names.length === 0) return {};
  return {
    EXPCTL_DATASETS: JSON.stringify(dirs),
    ...Object.fromEntries(names.map((name) => [datasetEnvName(name), dirs[name]!])),
    ...(names.length === 1 ? { EXPCTL_DATASET_DIR: dirs[names[0]!]! } : {}),
  };
}

/** The exact reference a rerun uses for a pinned dataset: never `@latest`. */
export function pinnedRef(pinned: Pick<PinnedDataset, 'dataset' | 'version'>): string {
  return `${pinned.dataset}@${pinned.version}`;
}

/** Replaces each versioned reference by the version it was pinned to (paths stay as they are). */
export function pinRefs(refs: readonly string[], pinned: readonly PinnedDataset[]): string[] {
  return refs.map((ref) => {
    const found = pinned.find((p) => p.ref === ref);
    return found ? pinnedRef(found) : ref;
  });
}

/** The refusal of a reference to a dataset nobody has added data to. */
export function unknownDatasetText(ref: string, dataset: string): string {
  return `--dataset ${ref}: there is no dataset ${dataset} (no version was ever added; \`expctl data versions\` lists the datasets); pass --wait-for-data to wait for its first version`;
}

/** How long `--wait-for-data` waits when given no duration. */
export const DEFAULT_WAIT_FOR_DATA_SECONDS = 3600;
/** How often a waiting experiment looks for a passed version (a passed version also wakes it at once). */
export const DATA_POLL_SECONDS = 15;

/** A dataset version as the catalog describes it (what resolution needs of it). */
export interface DatasetVersionView {
  dataset: string;
  version: number;
  status: 'open' | 'sealed' | 'passed' | 'failed';
  records: number | null;
  manifestSha256: string | null;
  shards: { index: number; sha256: string; bytes: number; fileName: string }[];
}

export interface DatasetLookup {
  latestPassed(dataset: string): DatasetVersionView | null;
  version(dataset: string, version: number): DatasetVersionView | null;
  /** Whether the dataset has any version at all (absent: taken as known). */
  known?(dataset: string): boolean;
}

/**
 * What an experiment's references resolve to now: the versions to pin, the references that have
 * no usable version yet (a run may wait for those), or a refusal (a version that failed its gates
 * never becomes usable, so waiting for it is pointless).
 */
export interface DataResolution {
  pinned: PinnedDataset[];
  /** One line per reference without a passed version yet. */
  unavailable: string[];
  /**
   * One line per reference to a dataset that has no version at all: most likely a typo, so refused
   * at validation unless the run waits for data (then it is also in `unavailable`).
   */
  unknown: string[];
  refusal: string | null;
}

export function resolveDatasetRefs(refs: readonly string[], lookup: DatasetLookup): DataResolution {
  const pinned: PinnedDataset[] = [];
  const unavailable: string[] = [];
  const unknown: string[] = [];
  const refusals: string[] = [];
  for (const raw of refs) {
    const ref = parseDatasetRef(raw);
    if (ref.kind === 'path') continue;
    if (lookup.known && !lookup.known(ref.dataset)) unknown.push(unknownDatasetText(raw, ref.dataset));
    const found =
      ref.version === 'latest' ? lookup.latestPassed(ref.dataset) : lookup.version(ref.dataset, ref.version);
    if (found === null) {
      unavailable.push(
        ref.version === 'latest'
          ? `${ref.dataset} has no version that passed its gates yet`
          : `${ref.dataset}@${ref.version} does not exist yet`,
      );
    } else if (found.status === 'failed') {
      refusals.push(
        `${ref.dataset}@${found.version} failed its gates and is not usable (see \`expctl data show ${ref.dataset}@${found.version}\`)`,
      );
    } else if (found.status !== 'passed' || found.manifestSha256 === null) {
      unavailable.push(`${ref.dataset}@${found.version} is ${found.status}: its gates have not passed yet`);
    } else {
      pinned.push({
        ref: raw,
        dataset: found.dataset,
        version: found.version,
        manifestSha256: found.manifestSha256,
        records: found.records,
        shards: [...found.shards].sort((a, b) => a.index - b.index),
      });
    }
  }
  return { pinned, unavailable, unknown, refusal: refusals.length > 0 ? refusals.join('; ') : null };
}
