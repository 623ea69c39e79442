/**
 * What a rerun reproduced and what it could not: its environment against the recorded one. Pure:
 * `rerun` compares the two records once the new run has trained.
 */

/** The parts of a run's record that say what it ran with, beyond its request. */
export interface RunEnvironmentFacts {
  /** The worker's environment record (null when the run never reached a host). */
  environment: {
    software: Record<string, string>;
    driverVersion: string | null;
    lockfiles: Record<string, string>;
  } | null;
  /** The dataset versions it was pinned to. */
  datasetVersions: { dataset: string; version: number; manifestSha256: string }[];
  acceleratorClass: string | null;
}

/** One thing that differs: what (`software python3`, `lockfile uv.lock`, ...), and each side's value. */
export interface EnvironmentDifference {
  what: string;
  /** null: the original did not have it (or did not record it). */
  original: string | null;
  rerun: string | null;
}

/** The comparison, or why none was made; `differences` is empty only when it was checked. */
export type EnvironmentComparison =
  | { checked: true; differences: EnvironmentDifference[] }
  | { checked: false; reason: string; differences: [] };

/** Every key of either side whose values differ, as differences named `${label} ${key}`. */
function compareMaps(
  label: string,
  original: Record<string, string>,
  rerun: Record<string, string>,
): EnvironmentDifference[] {
  const keys = [...new Set([...Object.keys(original), ...Object.keys(rerun)])].sort();
  return keys
    .filter((key) => original[key] !== rerun[key])
    .map((key) => ({ what: `${label} ${key}`, original: original[key] ?? null, rerun: rerun[key] ?? null }));
}

/** A pinned version as the comparison names it: its number and the start of its manifest digest. */
const versionText = (v: { version: number; manifestSha256: string }) =>
  `v${v.version} (${v.manifestSha256.slice(0, 12)})`;

/**
 * The rerun's environment against the original's: software versions, GPU driver, lockfile hashes,
 * dataset versions (by their manifest digest) and accelerator class. Not checked when either run
 * has no environment record (the original predates it, or the rerun never reached a host).
 */
export function compareEnvironments(original: RunEnvironmentFacts, rerun: RunEnvironmentFacts): EnvironmentComparison {
  if (original.environment === null)
    return { checked: false, reason: 'the original run has no environment record', differences: [] };
  if (rerun.environment === null)
    return { checked: false, reason: 'the rerun ended before a host recorded its environment', differences: [] };
  const datasets = (facts: RunEnvironmentFacts) =>
    Object.fromEntries(facts.datasetVersions.map((v) => [v.dataset, versionText(v)]));
  const differences = [
    ...compareMaps('software', original.environment.software, rerun.environment.software),
    ...(original.environment.driverVersion !== rerun.environment.driverVersion
      ? [{ what: 'GPU driver', original: original.environment.driverVersion, rerun: rerun.environment.driverVersion }]
      : []),
    ...compareMaps('lockfile', original.environment.lockfiles, rerun.environment.lockfiles),
    ...compareMaps('dataset', datasets(original), datasets(rerun)),
    ...(original.acceleratorClass !== rerun.acceleratorClass
      ? [{ what: 'accelerator class', original: original.acceleratorClass, rerun: rerun.acceleratorClass }]
      : []),
  ];
  return { checked: true, differences };
}

/** The comparison in one line, as `rerun` prints it on a terminal. */
export function comparisonText(comparison: EnvironmentComparison): string {
  if (!comparison.checked) return `environment not compared: ${comparison.reason}`;
  if (comparison.differences.length === 0)
    return 'environment differences: none (software, driver, lockfiles, dataset versions and accelerator class compared)';
  const value = (v: string | null) => v ?? '(none)';
  return `environment differences: ${comparison.differences
    .map((d) => `${d.what}: ${value(d.original)} -> ${value(d.rerun)}`)
    .join('; ')}`;
}
