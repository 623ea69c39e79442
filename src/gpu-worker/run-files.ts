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
    patch: path.join(dir, 'commit.patch'),
    pidFile: path.join(dir, 'supervisor.pid'),
    /** The finished run's TrainingOutcome, written before the activity reports it. */
    outcome: path.join(dir, 'outcome.json'),
  };
}
