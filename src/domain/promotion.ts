import type { TagDecision } from './decision.js';
import type { TerminalStatus as TerminalStatusName } from './experiment.js';
import { TAG_PATTERN, TAG_PATTERN_TEXT } from './bounds.js';
import { EXIT_CODES } from './exit-codes.js';

/**
 * Gated model promotion (BRIEF §8): the rules a promotion applies, its codes and its state. Pure:
 * the promotion workflow, its activities, the CLI and the tests import it.
 */

export type Direction = 'minimize' | 'maximize';

/**
 * The default regression threshold: a candidate whose holdout metric is worse than the incumbent's
 * by more than this fraction of the incumbent's (|incumbent| x 0.01 = 1 %) is blocked.
 */
export const DEFAULT_REGRESSION_THRESHOLD = 0.01;
/** How long an approval is waited for when `--approval-timeout` is not given. */
export const DEFAULT_APPROVAL_TIMEOUT_MS = 24 * 3600 * 1000;
/** The alias a promotion moves when `--alias` is not given. */
export const DEFAULT_ALIAS = 'staging';
export const ALIASES = ['staging', 'production'] as const;
export type Alias = (typeof ALIASES)[number];

/** Model names: part of workflow IDs, so they follow the tag rule. */
export const MODEL_NAME_PATTERN = TAG_PATTERN;
export const MODEL_NAME_TEXT = TAG_PATTERN_TEXT;

/** The evaluation run's environment: it is told it evaluates, on the holdout split, which model file. */
export const EVALUATE_ENV = 'EXPCTL_EVALUATE';
export const EVALUATE_HOLDOUT = 'holdout';
export const MODEL_ARTIFACT_ENV = 'EXPCTL_MODEL_ARTIFACT';

/**
 * EXPCTL_MODEL_ARTIFACT as an evaluation's request names a model kept in the fleet store:
 * `expctl-store:SHA256/PATH`. The worker that runs the evaluation fetches the object (verified by
 * its sha256) into the run's directory and gives the script that local file instead.
 */
const STORED_ARTIFACT = /^expctl-store:([0-9a-f]{64})\/(.+)$/;
export function storedArtifactReference(sha256: string, artifactPath: string): string {
  return `expctl-store:${sha256}/${artifactPath}`;
}
export function parseStoredArtifactReference(value: string | undefined): { sha256: string; path: string } | null {
  const match = value === undefined ? null : STORED_ARTIFACT.exec(value);
  return match ? { sha256: match[1]!, path: match[2]! } : null;
}

/** Every code a promotion or rollback ends with (or is refused with); deterministic, never free text. */
export const PROMOTION_CODES = {
  promoted: 'promotion.promoted',
  notFound: 'promotion.experiment_not_found',
  notKept: 'promotion.not_kept',
  noArtifact: 'promotion.no_artifact',
  ambiguousArtifact: 'promotion.ambiguous_artifact',
  secretsNotKept: 'promotion.secrets_not_kept',
  integrityMismatch: 'promotion.integrity_mismatch',
  artifactMissing: 'promotion.artifact_missing',
  evaluationFailed: 'promotion.evaluation_failed',
  regression: 'promotion.regression',
  approvalTimeout: 'promotion.approval_timeout',
  rejected: 'promotion.rejected',
  superseded: 'promotion.superseded',
  notAwaitingApproval: 'promotion.not_awaiting_approval',
  nothingToRollBack: 'promotion.nothing_to_roll_back',
  canceled: 'promotion.canceled',
} as const;
export type PromotionCode = (typeof PROMOTION_CODES)[keyof typeof PROMOTION_CODES];

export type PromotionStatus = 'running' | 'awaiting_approval' | 'promoted' | 'blocked' | 'rejected' | 'failed';
export type StageName = 'integrity' | 'evaluation' | 'approval' | 'alias';
export type StageStatus = 'running' | 'passed' | 'failed' | 'skipped';

export interface PromotionStage {
  name: StageName;
  status: StageStatus;
  at: string;
  code?: PromotionCode;
  note?: string;
}

/** The workflow ID of a promotion: `expctl-promotion-NAME-SUFFIX`. */
export const PROMOTION_ID_PREFIX = 'expctl-promotion-';
export function promotionWorkflowId(model: string, suffix: string): string {
  return `${PROMOTION_ID_PREFIX}${model}-${suffix}`;
}
export function isPromotionId(id: string): boolean {
  return id.startsWith(PROMOTION_ID_PREFIX);
}
/** The holdout evaluation's experiment ID (also its workflow ID), derived from the promotion's. */
export function holdoutExperimentId(promotionId: string): string {
  return `exp-holdout-${promotionId.slice(PROMOTION_ID_PREFIX.length)}`;
}

export interface RegressionVerdict {
  regressed: boolean;
  /** candidate - incumbent, signed so that positive is worse (null without an incumbent). */
  worseBy: number | null;
  /** The most the candidate may be worse by: threshold x |incumbent| (null without an incumbent). */
  allowed: number | null;
  reason: string;
}

/**
 * Whether the candidate's holdout metric regresses beyond the threshold against the incumbent's.
 * No incumbent (first promotion to the alias, or an incumbent without a holdout metric): passes.
 * The threshold is relative: worse by more than threshold x |incumbent| is a regression; equal
 * or better always passes.
 */
export function judgeRegression(input: {
  candidate: number;
  incumbent: number | null;
  direction: Direction;
  threshold: number;
  metricName: string;
}): RegressionVerdict {
  const { candidate, incumbent, direction, threshold, metricName } = input;
  if (!Number.isFinite(candidate))
    return { regressed: true, worseBy: null, allowed: null, reason: `holdout ${metricName} is not a finite number` };
  if (incumbent === null || !Number.isFinite(incumbent))
    return {
      regressed: false,
      worseBy: null,
      allowed: null,
      reason: `no incumbent holdout ${metricName} to compare with; holdout ${metricName} ${candidate}`,
    };
  const worseBy = direction === 'minimize' ? candidate - incumbent : incumbent - candidate;
  const allowed = threshold * Math.abs(incumbent);
  const better = direction === 'minimize' ? 'lower' : 'higher';
  const versus = `holdout ${metricName} ${candidate} vs incumbent ${incumbent} (${better} is better)`;
  if (worseBy > allowed)
    return {
      regressed: true,
      worseBy,
      allowed,
      reason: `${versus}: worse by ${round(worseBy)}, more than the allowed ${round(allowed)} (threshold ${threshold})`,
    };
  return {
    regressed: false,
    worseBy,
    allowed,
    reason:
      worseBy > 0
        ? `${versus}: worse by ${round(worseBy)}, within the allowed ${round(allowed)} (threshold ${threshold})`
        : `${versus}: no regression`,
  };
}

function round(x: number): number {
  return Number(x.toPrecision(6));
}

export interface AliasMove {
  version: number;
  previousVersion: number | null;
  kind: 'promote' | 'rollback';
  at: string;
}

/**
 * The versions an alias held, as a stack replayed from its moves (oldest first): a promotion
 * pushes its version, a rollback pops back to the one below. The top is the current version.
 */
export function aliasStack(moves: readonly AliasMove[]): number[] {
  const stack: number[] = [];
  for (const move of moves) {
    if (move.kind === 'promote') {
      if (stack[stack.length - 1] !== move.version) stack.push(move.version);
    } else {
      while (stack.length > 0 && stack[stack.length - 1] !== move.version) stack.pop();
      if (stack.length === 0) stack.push(move.version);
    }
  }
  return stack;
}

/** The version the alias holds now (null when it was never moved). */
export function currentVersion(moves: readonly AliasMove[]): number | null {
  const stack = aliasStack(moves);
  return stack.length ? stack[stack.length - 1]! : null;
}

/** Where a rollback moves the alias: the version it held before the current one, or null when there is none. */
export function rollbackTarget(moves: readonly AliasMove[]): { from: number; to: number } | null {
  const stack = aliasStack(moves);
  if (stack.length < 2) return null;
  return { from: stack[stack.length - 1]!, to: stack[stack.length - 2]! };
}

/** What a kept experiment must have to be promoted; the first problem found, or null. */
export function candidateRefusal(
  record: {
    status: string;
    decision: string | null;
    artifacts: { path: string }[];
    request: { secrets?: Record<string, string>; env: Record<string, string> };
  },
  artifact: string | undefined,
  redacted: string,
): { code: PromotionCode; reason: string } | null {
  if (record.status !== 'completed' || record.decision !== 'keep')
    return {
      code: PROMOTION_CODES.notKept,
      reason: `only a kept experiment's model can be promoted; this one is ${record.status}${record.decision ? ` (${record.decision})` : ''}`,
    };
  if (record.artifacts.length === 0)
    return {
      code: PROMOTION_CODES.noArtifact,
      reason: 'the experiment recorded no artifact (nothing written to EXPCTL_ARTIFACT_DIR)',
    };
  if (artifact !== undefined && !record.artifacts.some((a) => a.path === artifact))
    return {
      code: PROMOTION_CODES.noArtifact,
      reason: `the experiment has no artifact ${artifact} (it has ${record.artifacts.map((a) => a.path).join(', ')})`,
    };
  if (artifact === undefined && record.artifacts.length > 1)
    return {
      code: PROMOTION_CODES.ambiguousArtifact,
      reason: `the experiment has ${record.artifacts.length} artifacts (${record.artifacts.map((a) => a.path).join(', ')}); name the model with --artifact`,
    };
  if (Object.keys(record.request.secrets ?? {}).length > 0 || Object.values(record.request.env).includes(redacted))
    return {
      code: PROMOTION_CODES.secretsNotKept,
      reason:
        'the experiment ran with secrets the record does not keep, so its evaluation cannot be run from the record',
    };
  return null;
}

/**
 * What an evaluation run reports in place of a tag decision: nothing kept or discarded, no
 * sequence in the tag (its catalog record gets no decision fields).
 */
export function evaluationDecision(experimentId: string, status: TerminalStatusName, metric: number | null) {
  return {
    experimentId,
    sequence: 0,
    status,
    decision: null,
    action: null,
    metric,
    best: null,
    delta: null,
    nearMiss: false,
    consecutiveCrashes: 0,
    shouldAbort: false,
    rule: 'evaluation',
    comparedWith: { group: 'evaluation', experimentId: null, metric: null },
  } satisfies TagDecision;
}

/** Exit code of `expctl promote`: 0 promoted, 3 blocked or rejected by a gate, 4 failed (evaluation, superseded). */
export function promotionExitCode(status: PromotionStatus): number {
  switch (status) {
    case 'promoted':
    case 'running':
    case 'awaiting_approval':
      return EXIT_CODES.decided;
    case 'blocked':
    case 'rejected':
      return EXIT_CODES.run_failed;
    case 'failed':
      return EXIT_CODES.infrastructure;
  }
}
