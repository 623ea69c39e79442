import path from 'node:path';

/** Where a worker keeps one experiment's files: log, worktree, artifacts, patch. */
export function runDir(workDir: string, experimentId: string): string {
  if (!/^[A-Za-z0-9_.:-]+$/.test(experimentId)) throw new Error(`unsafe experiment id "${experimentId}"`);
  return path.join(workDir, 'runs', experimentId);
}

export function runFiles(workDir: string, experimentId: string) {
  const dir = runDir(workDir, experimentId);
  return {
    dir,
    log: path.join(dir, 'train.log'),
    tree: path.join(dir, 'tree'),
    artifacts: path.join(dir, 'artifacts'),
    /** EXPCTL_CHECKPOINT_DIR: what the script writes there is synced to the fleet store (checkpoint-sync.ts). */
    checkpoints: path.join(dir, 'checkpoints'),
    patch: path.join(dir, 'commit.patch'),
    pidFile: path.join(dir, 'supervisor.pid'),
    /** The worker's pid while it prepares the run (commit, data, setup), before any supervisor exists. */
    preparing: path.join(dir, 'preparing.pid'),
    /** The finished run's TrainingOutcome, written before the activity reports it. */
    outcome: path.join(dir, 'outcome.json'),
    /** How the training process ended, written by its supervisor before it reports it. */
    exit: path.join(dir, 'exit.json'),
    /** How the supervisor contained the run (its `started` message), for a worker that adopts it. */
    started: path.join(dir, 'started.json'),
    /** Touched by the worker supervising the run; the supervisor kills an orphaned run when it goes stale. */
    attached: path.join(dir, 'attached'),
    /** What a worker needs to finish the run and compute its outcome (see training.ts); no secret values. */
    record: path.join(dir, 'run.json'),
  };
}
