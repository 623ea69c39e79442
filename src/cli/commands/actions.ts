import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { activeExperimentIds, cancelExperiment, experimentState, submitExperiment } from '../../client/experiments.js';
import { pinRefs, type PinnedDataset } from '../../domain/dataset-refs.js';
import { exitCodeFor } from '../../domain/experiment.js';
import { REDACTED } from '../../domain/redact.js';
import {
  compareEnvironments,
  comparisonText,
  type EnvironmentComparison,
  type RunEnvironmentFacts,
} from '../../domain/reproduction.js';
import { tagProblem, type ExperimentRequest } from '../../domain/request.js';
import { connectClient } from '../../temporal/connection.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';
import { openStore } from '../../store/open.js';
import type { FleetStore } from '../../store/store.js';
import { asRefusal } from '../refusal.js';
import type { CatalogView } from '../../client/catalog.js';
import { openCatalog } from '../catalog-view.js';
import { CliError, printJson, safeText, wantsJson } from '../output.js';
import { FlagError, parseSecretFlag, parseSecretFlags, PROCESS_SECRET_SOURCES, type SecretSources } from '../parse.js';

/**
 * The request to repeat, in its public form, and the dataset versions it was pinned to: from the
 * workflow's state, or from the catalog once Temporal's retention has dropped the workflow.
 * Neither keeps secret values.
 */
async function originalRequest(id: string): Promise<{ request: ExperimentRequest; pinned: PinnedDataset[] }> {
  const client = await connectClient();
  const snapshot = await experimentState(client, id);
  if (snapshot) return { request: snapshot.request, pinned: snapshot.datasetVersions ?? [] };
  const record = await (await openCatalog(client)).experiment(id);
  if (!record) throw new CliError(`no experiment ${id} in Temporal or in the catalog`);
  return { request: record.request, pinned: record.datasetVersions ?? [] };
}

/** What a run's record says it ran with (null: the catalog has no record of it). */
async function environmentFacts(catalog: CatalogView, id: string): Promise<RunEnvironmentFacts | null> {
  const record = await catalog.experiment(id);
  if (!record) return null;
  return {
    environment: record.environment,
    datasetVersions: record.datasetVersions ?? [],
    acceleratorClass: record.acceleratorClass,
  };
}

/** The rerun's environment against the original's, from their records (the rerun has trained by now). */
async function compareWithOriginal(
  client: Client,
  originalId: string,
  rerunId: string,
): Promise<EnvironmentComparison> {
  const catalog = await openCatalog(client);
  const [original, rerun] = [await environmentFacts(catalog, originalId), await environmentFacts(catalog, rerunId)];
  if (!original) return { checked: false, reason: `the catalog has no record of ${originalId}`, differences: [] };
  if (!rerun) return { checked: false, reason: `the catalog has no record of ${rerunId}`, differences: [] };
  return compareEnvironments(original, rerun);
}

/** A detached rerun ends after this command: its environment is never compared here. */
const DETACHED_COMPARISON: EnvironmentComparison = {
  checked: false,
  reason: '--detach: the rerun had not trained when this command ended',
  differences: [],
};

export interface RepeatOptions {
  json?: boolean;
  detach?: boolean;
  /** `--secret NAME=@FILE` for secrets of the original (default: the submitter's environment). */
  secret?: string[];
  /** `retry --resume`: the new run restores the original's latest checkpoint from the fleet store. */
  resume?: boolean;
}

/** The checkpoint documents an experiment's attempts synced (runs/<id>/attempts/<n>/checkpoint). */
export function checkpointDocuments(names: readonly string[], experimentId: string): string[] {
  const prefix = `runs/${experimentId}/attempts/`;
  return names.filter((name) => name.startsWith(prefix) && /^\d+\/checkpoint$/.test(name.slice(prefix.length)));
}

/** Refuses `retry --resume` of a run that left no checkpoint in the fleet store, saying why. */
async function requireCheckpoint(id: string, store: FleetStore): Promise<void> {
  const listed = await store.listDocuments(`runs/${id}/attempts/`).catch((error: Error) => {
    throw new CliError(`--resume: the fleet store ${store.location} cannot be read (${error.message})`);
  });
  if (
    checkpointDocuments(
      listed.map((entry) => entry.name),
      id,
    ).length === 0
  )
    throw new CliError(
      `--resume: ${id} left no checkpoint in the fleet store ${store.location} (its script wrote none to EXPCTL_CHECKPOINT_DIR, or none was synced); retry it without --resume to start from step 0`,
      EXIT_CODES.validation_failed,
    );
}

/**
 * The original request with the values the record does not keep given again: each `--secret` of
 * the original, and each secret-looking `--env` variable (recorded `[redacted]`), from a
 * `--secret NAME=@FILE` flag or else the submitter's variable NAME. Refused, naming them, when one
 * cannot be found, or when text that ran (command, setup, repository) had a secret scrubbed from it.
 */
export function restoreSecrets(
  id: string,
  request: ExperimentRequest,
  flags: string[],
  sources: SecretSources = PROCESS_SECRET_SOURCES,
): ExperimentRequest {
  const scrubbed = [
    ...(JSON.stringify(request.command).includes(REDACTED) ? ['the command'] : []),
    ...(JSON.stringify(request.setup ?? []).includes(REDACTED) ? ['--setup'] : []),
    ...(request.repo.includes(REDACTED) ? ['--repo'] : []),
  ];
  if (scrubbed.length > 0)
    throw new CliError(
      `${id} ran with secret text in ${scrubbed.join(', ')} that the record does not keep; resubmit it with expctl run`,
    );
  const given = parseSecretFlags(flags, sources);
  if (given.problems.length > 0) throw new CliError(given.problems.join('; '));
  const secretNames = Object.keys(request.secrets ?? {});
  const envNames = Object.entries(request.env)
    .filter(([, value]) => value === REDACTED)
    .map(([name]) => name);
  const unknown = Object.keys(given.secrets).filter((name) => !secretNames.includes(name) && !envNames.includes(name));
  if (unknown.length > 0)
    throw new CliError(
      `--secret ${unknown.join(', ')}: ${id} had no such secret (it had ${[...secretNames, ...envNames].join(', ') || 'none'})`,
    );
  const problems: string[] = [];
  const valueOf = (name: string): string => {
    if (name in given.secrets) return given.secrets[name]!;
    try {
      return parseSecretFlag(name, sources)[1];
    } catch (error) {
      if (!(error instanceof FlagError)) throw error;
      problems.push(error.message);
      return '';
    }
  };
  const secrets = Object.fromEntries(secretNames.map((name) => [name, valueOf(name)]));
  const env = { ...request.env, ...Object.fromEntries(envNames.map((name) => [name, valueOf(name)])) };
  if (problems.length > 0)
    throw new CliError(
      `${id} ran with secrets the record does not keep (${[...secretNames, ...envNames].join(', ')}); give them again: ${problems.join('; ')}`,
    );
  return { ...request, env, secrets };
}

/** `retry` (same request, e.g. after an infrastructure failure) and `rerun` (reproduce a recorded run). */
export async function repeatCommand(kind: 'retry' | 'rerun', id: string, options: RepeatOptions): Promise<void> {
  const original = await originalRequest(id);
  const restored = restoreSecrets(id, original.request, options.secret ?? []);
  // A rerun reproduces: NAME@latest means the version the original was pinned to, never today's latest.
  const request = kind === 'rerun' ? { ...restored, datasets: pinRefs(restored.datasets, original.pinned) } : restored;
  const { idempotencyKey: _dropped, ...rest } = request;
  if (options.resume) await requireCheckpoint(id, await openStore());
  const client = await connectClient();
  const { experimentId, handle } = await submitExperiment(client, rest, {
    origin: { kind, of: id },
    ...(options.resume ? { resumeFrom: id } : {}),
  });
  const change = {
    experiment_id: experimentId,
    [`${kind}_of`]: id,
    commit: request.commit,
    command: request.command,
    config: request.configPath ?? null,
    datasets: request.datasets,
    changed:
      kind === 'rerun'
        ? `a new experiment ID; the same commit (and so the same patch and config), dataset versions and command; ${
            options.detach
              ? 'the environment is not compared (--detach): compare the two records with expctl show'
              : 'the environment is compared with the original once the rerun has trained'
          }`
        : options.resume
          ? `a new experiment ID; the request is the same; it resumes from ${id}'s latest checkpoint`
          : 'a new experiment ID; the request is the same',
    ...(kind === 'rerun' && options.detach ? { environment: DETACHED_COMPARISON } : {}),
  };
  const json = wantsJson(options);
  if (!json)
    console.log(
      safeText(`${experimentId}: ${kind} of ${id} at commit ${request.commit.slice(0, 12)} (${change.changed})`),
    );
  if (options.detach) {
    if (json) printJson({ ...change, status: 'submitted' });
    return;
  }
  const result = await handle.result();
  // The same exit codes as `run` and `wait` (BRIEF §4).
  process.exitCode = exitCodeFor(result.status);
  const environment = kind === 'rerun' ? await compareWithOriginal(client, id, experimentId) : undefined;
  // One JSON value: the run's result as `run` prints it, what was repeated, and how the environment compares.
  if (json) printJson({ ...result, ...change, ...(environment ? { environment } : {}) });
  else {
    console.log(
      safeText(
        `${experimentId}: ${result.status}${result.decision ? ` → ${result.decision}` : ''}, ${result.metric_name} ${result.metric ?? '-'}: ${result.reason}`,
      ),
    );
    if (environment) console.log(safeText(`${comparisonText(environment)} (against ${id})`));
  }
}

/** `tag stop T`: cancels every queued or running experiment of the tag. */
export async function tagStopCommand(tag: string, options: { json?: boolean }): Promise<void> {
  // The tag goes into a visibility query: only a well-formed tag name may.
  const problem = tagProblem(tag);
  if (problem) throw new CliError(safeText(problem));
  const client = await connectClient();
  const canceled: string[] = [];
  for await (const id of activeExperimentIds(client, tag)) {
    try {
      await cancelExperiment(client, id);
    } catch (error) {
      const refusal = asRefusal(error);
      if (refusal !== error) throw refusal;
      // It ended between the listing and the cancel: nothing to cancel.
      if (error instanceof WorkflowNotFoundError) continue;
      throw error;
    }
    canceled.push(id);
  }
  if (wantsJson(options)) return printJson({ tag, canceled });
  console.log(
    canceled.length
      ? `canceled ${canceled.length} experiment(s) of ${safeText(tag)}:\n  ${canceled.map((id) => safeText(id)).join('\n  ')}`
      : `no queued or running experiment in tag ${safeText(tag)}`,
  );
}
