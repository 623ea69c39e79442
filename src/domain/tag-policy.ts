import { MAX_CONSECUTIVE_CRASHES, MAX_GUARD_CHARS, MAX_GUARDS } from './bounds.js';
import { guardProblem, type GuardRule, type TagPolicy } from './decision.js';
import { ENV_NAME_PATTERN, ENV_NAME_TEXT } from './environment.js';

/**
 * The limits of a tag's policy, checked once: by `tag create` before it asks, and by the tag
 * workflow's update validator for every caller. Pure: the workflow imports it. Null when the
 * policy change is acceptable, else the first problem.
 */
export function tagPolicyProblem(policy: Partial<TagPolicy>): string | null {
  if (policy.nearMissThreshold !== undefined && !(policy.nearMissThreshold >= 0))
    return 'nearMissThreshold must be >= 0';
  if (
    policy.maxConsecutiveCrashes !== undefined &&
    !(
      Number.isInteger(policy.maxConsecutiveCrashes) &&
      policy.maxConsecutiveCrashes >= 1 &&
      policy.maxConsecutiveCrashes <= MAX_CONSECUTIVE_CRASHES
    )
  ) {
    return `maxConsecutiveCrashes must be a whole number from 1 to ${MAX_CONSECUTIVE_CRASHES}`;
  }
  if (policy.minImprovement !== undefined && !(Number.isFinite(policy.minImprovement) && policy.minImprovement >= 0))
    return 'minImprovement must be a finite number >= 0';
  if (policy.nearMissThreshold !== undefined && !Number.isFinite(policy.nearMissThreshold))
    return 'nearMissThreshold must be finite';
  if (policy.guards !== undefined) {
    const problem = guardsProblem(policy.guards);
    if (problem) return problem;
  }
  if (policy.allowEnv !== undefined) {
    const names: unknown = policy.allowEnv;
    if (!Array.isArray(names) || names.some((name) => typeof name !== 'string' || !ENV_NAME_PATTERN.test(name)))
      return `allowEnv must be a list of environment variable names (${ENV_NAME_TEXT})`;
  }
  return null;
}

function guardsProblem(guards: GuardRule[]): string | null {
  if (!Array.isArray(guards)) return 'guards must be a list';
  if (guards.length > MAX_GUARDS) return `a tag has at most ${MAX_GUARDS} guards`;
  if (guards.some((guard) => typeof guard?.value === 'string' && guard.value.length > MAX_GUARD_CHARS))
    return `a guard has at most ${MAX_GUARD_CHARS} characters`;
  return guards.map((guard) => guardProblem(guard)).find((p) => p !== null) ?? null;
}
