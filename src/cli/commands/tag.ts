import { configureTag, tagState } from '../../client/tags.js';
import { formatGuard, tagCountsSummary, type TagCounts, type TagPolicy } from '../../domain/decision.js';
import { ENV_NAME_PATTERN, ENV_NAME_TEXT } from '../../domain/environment.js';
import { parseGuard } from '../../domain/guard.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';
import { tagProblem } from '../../domain/request.js';
import { tagPolicyProblem } from '../../domain/tag-policy.js';
import { asRefusal } from '../refusal.js';
import { connectClient } from '../../temporal/connection.js';
import { CliError, formatTable, printJson, safeText, wantsJson } from '../output.js';
import { MAX_CONSECUTIVE_CRASHES, MAX_GUARD_CHARS, MAX_GUARDS } from '../../domain/bounds.js';
import { checkMetricName, parseNumber } from '../parse.js';

export interface TagCreateOptions {
  metric?: string;
  maximize?: boolean;
  nearMiss?: string;
  maxCrashes?: string;
  compareAcrossClasses?: boolean;
  minImprovement?: string;
  guard?: string[];
  allowEnv?: string[];
  json?: boolean;
}

/** The policy `tag create` asks for, parsed strictly: a malformed value is refused, never stored as null. */
export function policyFromOptions(options: TagCreateOptions): Partial<TagPolicy> {
  const policy: Partial<TagPolicy> = {};
  if (options.metric !== undefined) policy.metricName = checkMetricName('--metric', options.metric);
  if (options.maximize !== undefined) policy.direction = options.maximize ? 'maximize' : 'minimize';
  if (options.nearMiss !== undefined)
    policy.nearMissThreshold = parseNumber('--near-miss', options.nearMiss, { min: 0 });
  if (options.maxCrashes !== undefined)
    policy.maxConsecutiveCrashes = parseNumber('--max-crashes', options.maxCrashes, {
      integer: true,
      min: 1,
      max: MAX_CONSECUTIVE_CRASHES,
    });
  if (options.minImprovement !== undefined)
    policy.minImprovement = parseNumber('--min-improvement', options.minImprovement, { min: 0 });
  if (options.compareAcrossClasses !== undefined) policy.compareAcrossClasses = options.compareAcrossClasses;
  if (options.guard?.length) {
    if (options.guard.length > MAX_GUARDS)
      throw new Error(`--guard was given ${options.guard.length} times; a tag has at most ${MAX_GUARDS} guards`);
    policy.guards = options.guard.map((guard) => {
      if (guard.length > MAX_GUARD_CHARS)
        throw new Error(`--guard: a guard of ${guard.length} characters; a guard has at most ${MAX_GUARD_CHARS}`);
      try {
        return parseGuard(guard);
      } catch (error) {
        throw new Error(`--guard: ${(error as Error).message}`);
      }
    });
  }
  if (options.allowEnv !== undefined) {
    for (const name of options.allowEnv)
      if (!ENV_NAME_PATTERN.test(name))
        throw new Error(`--allow-env ${JSON.stringify(name)}: expected ${ENV_NAME_TEXT}`);
    policy.allowEnv = [...new Set(options.allowEnv)].sort();
  }
  const problem = tagPolicyProblem(policy);
  if (problem) throw new Error(problem);
  return policy;
}

/** The counts line of `tag show`: every kind as what it is, rates as outcome.ts defines them. */
export function tagCountsLine(tag: string, counts: TagCounts, consecutiveCrashes: number): string {
  const c = tagCountsSummary(counts);
  const pct = (rate: number) => `${(rate * 100).toFixed(0)}%`;
  return (
    `tag ${tag}: ${c.runs} runs, ${c.kept} kept (${pct(c.keepRate)}), ${c.discarded} discarded, ${c.crashed} crashed (${pct(c.crashRate)}), ` +
    `${c.nearMisses} near misses; not counted: ${c.refused} refused, ${c.infrastructure} infrastructure failures, ${c.canceled} canceled; ` +
    `${consecutiveCrashes} consecutive crashes`
  );
}

/** `tag create`: sets a tag's policy (metric, direction, thresholds); creates the tag if new. */
export async function tagCreateCommand(tag: string, options: TagCreateOptions): Promise<void> {
  const problem = tagProblem(tag);
  if (problem) throw new CliError(safeText(problem), EXIT_CODES.validation_failed);
  let policy: Partial<TagPolicy>;
  try {
    policy = policyFromOptions(options);
  } catch (error) {
    // Every problem of policyFromOptions is one of the input: a refusal (exit 2), as for `run`.
    throw new CliError(safeText((error as Error).message), EXIT_CODES.validation_failed);
  }
  const client = await connectClient();
  const state = await configureTag(client, tag, policy).catch((error: unknown) => {
    throw asRefusal(error);
  });
  if (wantsJson(options)) return printJson(state);
  console.log(
    `tag ${tag}: ${state.policy.metricName} (${state.policy.direction}), near miss within ${state.policy.nearMissThreshold}, abort after ${state.policy.maxConsecutiveCrashes} crashes, compare ${state.policy.compareAcrossClasses ? 'across classes' : 'within an accelerator class'}, keep only above ${state.policy.minImprovement ?? 0}${state.policy.guards?.length ? `, guards ${state.policy.guards.map(formatGuard).join(', ')}` : ''}${state.policy.allowEnv?.length ? `, runs may set ${state.policy.allowEnv.join(', ')}` : ''}`,
  );
}

export async function tagShowCommand(tag: string, options: { json?: boolean }): Promise<void> {
  const client = await connectClient();
  const state = await tagState(client, tag);
  if (!state) throw new CliError(`no tag ${tag} (it is created by its first experiment or \`expctl tag create\`)`);
  if (wantsJson(options)) return printJson({ ...state, counts: tagCountsSummary(state.counts) });
  console.log(tagCountsLine(tag, state.counts, state.consecutiveCrashes));
  console.log(
    formatTable(
      ['group', 'best', 'experiment', 'commit'],
      Object.entries(state.best).map(([group, best]) => [
        group,
        best.metric,
        best.experimentId,
        best.commit.slice(0, 7),
      ]),
    ),
  );
}
