import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { datasetVariableClash, isVersionedRef } from '../domain/dataset-refs.js';
import type { ExperimentRequest } from '../domain/request.js';
import { blobSize, readFileAtCommit, treeEntry, whichProgram } from '../gpu-worker/git.js';
import { formatBytes, MAX_CONFIG_BYTES } from '../domain/bounds.js';
import { confinedRelative, resolveUnderRoot, symlinkTargetInTree } from '../gpu-worker/confine.js';
import { REFUSED_ON_HOST } from '../shared/constants.js';
import { storeCheckpointSource } from '../domain/checkpoints.js';
import { attemptsWithCheckpoint } from '../gpu-worker/checkpoint-restore.js';
import type { FleetStore } from '../store/store.js';

/**
 * The checks of a request that depend on the host: the files the command and config name in the
 * commit, the program on the run's PATH, the checkpoint and the path datasets on this host's disk.
 * Validation runs them on one host; the host that leases the run runs them again before the
 * process starts, and hands the script what they resolved.
 */

/** Where a host's paths resolve: what a request names is confined to these. */
export interface HostRoots {
  host: string;
  datasetsDir: string;
  checkpointsDir: string;
  /** The fleet store `--checkpoint store:ID` is found in (absent: such a checkpoint is refused). */
  store?: FleetStore;
}

/** What the checks resolved on this host. */
export interface HostResolution {
  resolvedConfig: unknown;
  /** The program's path on this host, or inside the commit's tree. */
  interpreter: string | null;
  /**
   * The checkpoint: inside the commit (`inTree`, relative), on this host's disk (absolute), or an
   * experiment's latest in the fleet store (`fromStore`, restored into EXPCTL_CHECKPOINT_DIR).
   */
  checkpoint: { inTree: string } | { onHost: string } | { fromStore: string } | null;
  /** Each path dataset reference and the directory it resolved to on this host. */
  datasetDirs: Record<string, string>;
}

/** Arguments that name files in the repository (scripts, configs), as opposed to flags and values. */
const FILE_ARGUMENT = /^[^-][^=]*\.(py|sh|js|mjs|ts|json|yaml|yml|toml|cfg|ini)$/;

/** Symlinks followed inside a commit before a reference is refused as a loop. */
const MAX_SYMLINK_HOPS = 8;

/**
 * Resolves a reference inside the commit's tree, following symlinks stored in the commit; every hop
 * must stay inside the tree. `subject` names it in refusals ("config a.json"). Returns the final path
 * and its git mode, or throws a specific refusal.
 */
async function resolveInCommit(
  repo: string,
  commit: string,
  subject: string,
  reference: string,
): Promise<{ path: string; mode: string }> {
  const short = commit.slice(0, 12);
  let current = confinedRelative(reference);
  if (current === null)
    throw new Error(`${subject} must be a path inside the repository; absolute paths and ".." are refused`);
  for (let hop = 0; hop <= MAX_SYMLINK_HOPS; hop++) {
    const entry = await treeEntry(repo, commit, current);
    if (!entry) throw new Error(`${subject} does not exist in commit ${short}`);
    if (entry.type !== 'blob') throw new Error(`${subject} is a directory or submodule in commit ${short}, not a file`);
    if (entry.mode !== '120000') return { path: current, mode: entry.mode };
    const target = await readFileAtCommit(repo, commit, current);
    const next = symlinkTargetInTree(current, target);
    if (next === null)
      throw new Error(
        `${subject} is a symlink to ${target}, outside the repository; it must stay inside the commit's tree`,
      );
    current = next;
  }
  throw new Error(`${subject} is a chain of more than ${MAX_SYMLINK_HOPS} symlinks in commit ${short}`);
}

/** The PATH the training process gets: the request's own, else the worker's. */
export function runPath(request: ExperimentRequest, env: NodeJS.ProcessEnv = process.env): string {
  return request.env.PATH ?? env.PATH ?? '';
}

/** Runs every host-dependent check against `repo` (this host's copy of the commit); throws a specific refusal. */
export async function checkOnHost(roots: HostRoots, repo: string, request: ExperimentRequest): Promise<HostResolution> {
  const short = request.commit.slice(0, 12);
  const inTree = (subject: string, reference: string) => resolveInCommit(repo, request.commit, subject, reference);

  const [program, ...args] = request.command as [string, ...string[]];
  let interpreter: string | null;
  if (program.includes('/')) {
    if (confinedRelative(program) === null) {
      throw new Error(
        `the command's program ${program} is outside the repository: name the program on PATH (e.g. python3, uv) ` +
          'or by its path inside the repository (e.g. scripts/train.sh); absolute paths and ".." are refused',
      );
    }
    const entry = await inTree(`the command's program ${program}`, program);
    if (entry.mode !== '100755') {
      throw new Error(
        `the command's program ${program} is not executable in commit ${short}: run it through its interpreter (e.g. python3 ${program}) or commit it with mode 755`,
      );
    }
    interpreter = entry.path;
  } else {
    interpreter = await whichProgram(program, runPath(request));
    if (!interpreter)
      throw new Error(
        `command "${program}" is not installed on ${roots.host} (not found on the run's PATH${request.env.PATH === undefined ? '' : ', set by --env PATH'})`,
      );
  }
  for (const arg of args.filter((a) => FILE_ARGUMENT.test(a))) {
    if (confinedRelative(arg) === null) {
      throw new Error(
        `${arg} (named in the command) is outside the repository: files the command names must be paths inside the repository`,
      );
    }
    await inTree(`${arg} (named in the command)`, arg);
  }

  let resolvedConfig: unknown = null;
  if (request.configPath) {
    const config = await inTree(`config ${request.configPath}`, request.configPath);
    const bytes = await blobSize(repo, request.commit, config.path);
    if (bytes > MAX_CONFIG_BYTES)
      throw new Error(
        `config ${request.configPath} is ${formatBytes(bytes)}; a config has at most ${formatBytes(MAX_CONFIG_BYTES)} (it is kept in the record): put large data in a dataset`,
      );
    const text = await readFileAtCommit(repo, request.commit, config.path);
    try {
      resolvedConfig = JSON.parse(text);
    } catch (error) {
      throw new Error(`config ${request.configPath} is not valid JSON: ${(error as Error).message}`);
    }
  }
  const checkpoint = request.checkpoint ? await checkpointOnHost(roots, repo, request, inTree) : null;
  const clash = datasetVariableClash(request.datasets);
  if (clash) throw new Error(clash);
  return { resolvedConfig, interpreter, checkpoint, datasetDirs: await datasetsOnHost(roots, request.datasets) };
}

/**
 * The checks again on the host leased to train the run: a refusal is a non-retryable failure of
 * type REFUSED_ON_HOST, which ends the run validation_failed (never a crash, never retried).
 */
export async function recheckOnLeasedHost(
  roots: HostRoots,
  repo: string,
  request: ExperimentRequest,
): Promise<HostResolution> {
  try {
    return await checkOnHost(roots, repo, request);
  } catch (error) {
    throw ApplicationFailure.create({
      type: REFUSED_ON_HOST,
      nonRetryable: true,
      message: `re-checked on ${roots.host}, the host leased to train it: ${(error as Error).message}`,
    });
  }
}

/** The checkpoint in the commit's tree, else under this host's checkpoints root. */
async function checkpointOnHost(
  roots: HostRoots,
  repo: string,
  request: ExperimentRequest,
  inTree: (subject: string, reference: string) => Promise<{ path: string }>,
): Promise<HostResolution['checkpoint']> {
  const reference = request.checkpoint!;
  const source = storeCheckpointSource(reference);
  if (source !== null) return { fromStore: await checkpointInStore(roots, source) };
  const relative = confinedRelative(reference);
  if (relative === null) {
    throw new Error(
      `checkpoint ${reference} must be a path inside the commit's tree or under the checkpoints root of ${roots.host}; absolute paths and ".." are refused`,
    );
  }
  if (await treeEntry(repo, request.commit, relative))
    return { inTree: (await inTree(`checkpoint ${reference}`, reference)).path };
  const found = await resolveUnderRoot(roots.checkpointsDir, relative);
  if (found.ok) return { onHost: found.location };
  if (found.problem === 'symlink_escape') {
    throw new Error(
      `checkpoint ${reference} resolves to ${found.location}, outside the checkpoints root of ${roots.host} (${roots.checkpointsDir}); a symlink there must stay inside it`,
    );
  }
  throw new Error(
    `checkpoint ${reference} was not found in commit ${request.commit.slice(0, 12)} or under the checkpoints root of ${roots.host} (${roots.checkpointsDir})`,
  );
}

/** `store:ID`: the experiment must have synced a checkpoint the store holds now. */
async function checkpointInStore(roots: HostRoots, experimentId: string): Promise<string> {
  if (!roots.store) throw new Error(`checkpoint store:${experimentId}: the worker on ${roots.host} has no fleet store`);
  const attempts = await attemptsWithCheckpoint(roots.store, experimentId).catch((error: Error) => {
    throw new Error(
      `checkpoint store:${experimentId}: the fleet store ${roots.store!.location} did not answer (${error.message})`,
    );
  });
  if (attempts.length === 0)
    throw new Error(
      `checkpoint store:${experimentId}: no attempt of ${experimentId} has a synced checkpoint in the fleet store ${roots.store.location}`,
    );
  return experimentId;
}

/** Each path reference resolved under this host's datasets root (versions are laid out at training time). */
async function datasetsOnHost(roots: HostRoots, references: readonly string[]): Promise<Record<string, string>> {
  const dirs: Record<string, string> = {};
  for (const dataset of references.filter((ref) => !isVersionedRef(ref))) {
    const found = await resolveUnderRoot(roots.datasetsDir, dataset);
    if (found.ok) {
      dirs[dataset] = found.location;
      continue;
    }
    if (found.problem === 'escapes') {
      throw new Error(
        `dataset ${dataset} must be a path under the datasets root of ${roots.host} (${roots.datasetsDir}); absolute paths and ".." are refused`,
      );
    }
    if (found.problem === 'symlink_escape') {
      throw new Error(
        `dataset ${dataset} resolves to ${found.location}, outside the datasets root of ${roots.host} (${roots.datasetsDir}); a symlink there must stay inside it`,
      );
    }
    throw new Error(`dataset ${dataset} is not present on ${roots.host} (looked at ${found.location})`);
  }
  return dirs;
}

/** The variables that hand the script what the checks resolved: EXPCTL_CHECKPOINT and the path datasets. */
export function resolvedInputVariables(resolution: HostResolution, tree: string): Record<string, string> {
  const checkpoint = resolution.checkpoint;
  // A store checkpoint is named once restored (prepare-run.ts): EXPCTL_CHECKPOINT is then its directory.
  if (!checkpoint || 'fromStore' in checkpoint) return {};
  return { EXPCTL_CHECKPOINT: 'inTree' in checkpoint ? path.join(tree, checkpoint.inTree) : checkpoint.onHost };
}
