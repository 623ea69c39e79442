import path from 'node:path';
import { DEFAULT_METRIC } from '../domain/decision.js';
import type { ExperimentRequestInput } from '../domain/request.js';
import type { RunFlags } from './parse.js';

/** The request `run` and `batch` build from their flags: pure, so both commands share it without importing each other. */

/** The config path as the request names it: relative to the repository root. */
function configPathIn(repo: string, config: string | undefined): string | undefined {
  if (config === undefined) return undefined;
  return path.isAbsolute(config) || config.startsWith('.') ? path.relative(repo, path.resolve(config)) : config;
}

/** The request `run`'s flags describe (`batch` builds each variant's from the same flags). */
export function requestInput(
  flags: RunFlags,
  source: { repo: string; commit: string },
  command: string[],
  /** Where workers fetch the commit (the fleet remote's, when there is one: fleetSourceFor). */
  shipped: { repo: string; commit: string } = source,
): ExperimentRequestInput {
  return {
    tag: flags.tag as string,
    hypothesis: flags.hypothesis as string,
    category: flags.category as never,
    description: flags.description,
    command: command.length > 0 ? command : undefined,
    setup: flags.setup,
    setupTimeoutSeconds: flags.setupTimeoutSeconds,
    repo: shipped.repo,
    commit: shipped.commit,
    configPath: configPathIn(source.repo, flags.config),
    datasets: flags.datasets,
    ...(flags.waitForDataSeconds !== undefined ? { waitForDataSeconds: flags.waitForDataSeconds } : {}),
    checkpoint: flags.checkpoint,
    requirements: {
      acceleratorClass: flags.gpuClass ?? 'any',
      gpuMemoryMb: flags.gpuMemoryMb ?? 0,
      ...(flags.gpus !== undefined && flags.gpus !== 1 ? { gpus: flags.gpus } : {}),
      runtimeTags: flags.runtimeTags,
    },
    timeBudgetSeconds: flags.timeBudgetSeconds,
    timeoutSeconds: flags.timeoutSeconds,
    metric:
      flags.metric || flags.maximize
        ? { name: flags.metric ?? DEFAULT_METRIC.name, ...(flags.maximize ? { direction: 'maximize' as const } : {}) }
        : undefined,
    simplification: flags.simplification,
    idempotencyKey: flags.idempotencyKey,
    maxReplacements: flags.maxReplacements,
    env: flags.env,
    secrets: flags.secrets,
  };
}
