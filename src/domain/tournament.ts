import { applyOutcome, type RunOutcome, type TagDecision, type TagState } from './decision.js';
import { MAX_BATCH_VARIANTS } from './bounds.js';
import { EXIT_CODES } from './exit-codes.js';

/** The most variants one batch may hold (a batch is decided in one update of its tag): MAX_BATCH_VARIANTS of bounds.ts. */
export const MAX_BATCH_SIZE = MAX_BATCH_VARIANTS;

/**
 * A batch's decision (BRIEF §5 applied to K variants of one base): every child is judged against
 * the tag's best before the batch, as `run` judges one run; the best child that would be kept is
 * kept, and the others are discarded. A child that beat the old best but lost to the winner is
 * `outranked`, and flagged a near miss (an idea that worked, worth combining). Pure: the tag
 * workflow applies it in one update, so the tag's state changes once.
 */
export interface TournamentVerdict {
  state: TagState;
  /** One per outcome, in the order the outcomes were given. */
  decisions: TagDecision[];
  /** The kept child, if any. */
  winner: { experimentId: string; commit: string; metric: number } | null;
}

/**
 * Order of judgement: crashes and other non-completions first (so a batch with any completed
 * child resets the crash counter, and one where all crashed counts each crash once), then the
 * completed children best metric first (ties in the order given), then those without a metric.
 */
function judgementOrder(outcomes: RunOutcome[], direction: 'minimize' | 'maximize'): number[] {
  const rank = (o: RunOutcome) => (o.status !== 'completed' ? 0 : o.metric === null ? 2 : 1);
  return outcomes
    .map((_, index) => index)
    .sort((a, b) => {
      const [x, y] = [outcomes[a]!, outcomes[b]!];
      if (rank(x) !== rank(y) || rank(x) !== 1) return rank(x) - rank(y) || a - b;
      const diff = direction === 'minimize' ? x.metric! - y.metric! : y.metric! - x.metric!;
      return diff || a - b;
    });
}

export function applyTournament(state: TagState, outcomes: RunOutcome[]): TournamentVerdict {
  const decisions: TagDecision[] = new Array<TagDecision>(outcomes.length);
  let winner: TournamentVerdict['winner'] = null;
  let current = state;
  for (const index of judgementOrder(outcomes, state.policy.direction)) {
    const outcome = outcomes[index]!;
    // Judged against the best before the batch; only the winner moves it.
    const next = applyOutcome({ ...current, best: state.best }, outcome, { outranked: winner !== null });
    current = { ...next.state, best: winner ? current.best : next.state.best };
    decisions[index] = next.decision;
    if (next.decision.decision === 'keep')
      winner = { experimentId: outcome.experimentId, commit: outcome.commit, metric: outcome.metric! };
  }
  // Each child's best and delta are what `run` would print had it been judged alone against the best
  // before the batch: delta against that best, best that best (its own metric if kept), so
  // metric - delta = best for every discarded child. The tag's best after the batch is the batch's.
  return { state: current, decisions, winner };
}

/** The tag's best after a batch: the winner's metric, else the best every child was compared with. */
export function bestAfterBatch(
  winner: { metric: number } | null,
  decisions: Pick<TagDecision, 'comparedWith'>[],
): number | null {
  return winner?.metric ?? decisions.find((d) => d.comparedWith.metric !== null)?.comparedWith.metric ?? null;
}

/** What the agent does after a batch: advance the branch to the winner, or reset to the base. */
export function batchGitAction(
  winner: { commit: string } | null,
  base: string,
): { action: 'advance' | 'reset'; commit: string } {
  return winner ? { action: 'advance', commit: winner.commit } : { action: 'reset', commit: base };
}

/**
 * The batch's exit code, with `run`'s meanings: 0 when any child completed; else the most telling
 * failure among the children: a crash (3), infrastructure (4), a cancel (5), and refused (2) only
 * when every child was refused.
 */
export function batchExitCode(childCodes: number[]): number {
  const { decided, run_failed, infrastructure, canceled, validation_failed } = EXIT_CODES;
  for (const code of [decided, run_failed, infrastructure, canceled, validation_failed])
    if (childCodes.includes(code)) return code;
  return childCodes[0] ?? validation_failed;
}
