import fs from 'node:fs/promises';
import { processAlive } from '../shared/processes.js';
import { detectContainment } from './containment.js';
import {
  reconcileRuns,
  settleKeptRuns,
  touchAttached,
  type AttachRun,
  type ExperimentOpen,
  type ReconcileResult,
} from './reconcile.js';
import { runFiles } from './run-files.js';
import type { RunRecord } from './prepare-run.js';

/** How often a worker asks whether the experiments of the runs it kept at start are still open. */
const KEPT_RUNS_CHECK_MS = 15_000;

type Log = (line: string) => void;

/** Logs the runs a worker forgot (at start or later): their experiments no longer need them. */
function logForgotten(log: Log, runs: ReconcileResult['forgotten']): void {
  for (const run of runs)
    log(`expctl worker: forgot ${run.experimentId} (supervisor ${run.pid}): ${run.why}; its cgroup is removed`);
}

/** Whether the pool holds the lease; null where it does not know the slot (see leaseHeldQuery). */
export type LeaseHeld = (slotId: string, leaseId: string) => Promise<boolean | null>;

/**
 * A kept run is attached only once the pool confirms the lease it was started on, like a watched
 * one (training.ts leaseCheck): a restarted worker re-attaches within the fencing time, but never
 * keeps going a run whose lease was revoked meanwhile. A run without a recorded lease is not
 * confirmed: its supervisor fences it. Without a pool to ask, the worker's word is the confirmation.
 */
export function leaseConfirmer(workDir: string, leaseHeld: LeaseHeld | undefined): AttachRun {
  return async (experimentId) => {
    const files = runFiles(workDir, experimentId);
    if (!leaseHeld) return touchAttached(files.attached);
    const text = await fs.readFile(files.record, 'utf8').catch(() => undefined);
    const record = text === undefined ? undefined : (JSON.parse(text) as RunRecord);
    if (!record?.slotId || !record.leaseId) return;
    const askedAt = new Date();
    if (await leaseHeld(record.slotId, record.leaseId).catch(() => false)) await touchAttached(files.attached, askedAt);
  };
}

/** What a starting worker finds in its work directory, settled and told to its operator. */
export async function reconcileAtStart(
  workDir: string,
  experimentOpen: ExperimentOpen,
  log: Log,
  attach?: AttachRun,
): Promise<ReconcileResult> {
  const reconciled = await reconcileRuns(workDir, undefined, experimentOpen, attach);
  for (const orphan of reconciled.stopped)
    log(`expctl worker: stopped what was left of ${orphan.experimentId} (supervisor ${orphan.pid})`);
  logForgotten(log, reconciled.forgotten);
  for (const run of reconciled.kept)
    log(`expctl worker: kept ${run.experimentId} (supervisor ${run.pid}) for its experiment to re-attach`);
  return reconciled;
}

/**
 * Kept runs stay attached until their experiment adopts them (the adopting activity touches them too);
 * those whose experiment closed meanwhile are forgotten, so none is kept going for nobody.
 * Returns the function that stops keeping them.
 */
export function keepRunsAttached(options: {
  workDir: string;
  kept: ReconcileResult['kept'];
  experimentOpen: ExperimentOpen;
  /** Whether a run is watched by this worker now (an activity adopted it). */
  watched: (experimentId: string) => boolean;
  log: Log;
  /** How a kept run is attached (default: its attached file touched); see leaseConfirmer. */
  attach?: AttachRun;
}): () => void {
  const { workDir, experimentOpen, log } = options;
  const attach = options.attach ?? ((experimentId: string) => touchAttached(runFiles(workDir, experimentId).attached));
  // One question to the pool per run at a time: through an outage an answer can take long.
  const attaching = new Set<string>();
  let kept = options.kept;
  let settling: Promise<void> | undefined;
  let lastSettled = Date.now();
  const keepAttached = setInterval(() => {
    for (const run of kept) {
      if (!processAlive(run.pid) || attaching.has(run.experimentId)) continue;
      attaching.add(run.experimentId);
      void attach(run.experimentId)
        .catch(() => undefined)
        .finally(() => attaching.delete(run.experimentId));
    }
    if (settling || kept.length === 0 || Date.now() - lastSettled < KEPT_RUNS_CHECK_MS) return;
    settling = (async () => {
      const settled = await settleKeptRuns(
        workDir,
        await detectContainment(workDir),
        kept,
        experimentOpen,
        options.watched,
      );
      kept = settled.kept;
      logForgotten(log, settled.forgotten);
    })()
      .catch((error: Error) => log(`expctl worker: could not check its kept runs: ${error.message}`))
      .finally(() => {
        settling = undefined;
        lastSettled = Date.now();
      });
  }, 2000);
  keepAttached.unref();
  return () => clearInterval(keepAttached);
}
