import fs from 'node:fs/promises';
import type { TrainingOutcome } from '../domain/experiment.js';
import { runFiles } from '../gpu-worker/run-files.js';
import { processAlive } from '../shared/processes.js';
import { replacePrivateFile } from '../security/files.js';

export interface RunStatusDeps {
  workDir: string;
}

/** What a host knows of one experiment's training, read from the run's files (they outlive the worker). */
export type HostRunStatus =
  | { state: 'finished'; outcome: TrainingOutcome }
  /** Alive, or ended with its exit recorded but its outcome not yet computed (supervisorPid null): awaitTraining gets it. */
  | { state: 'running'; supervisorPid: number | null }
  | { state: 'unknown'; why: string };

/**
 * The durable result of a finished run, written before the train activity reports it: when the
 * report cannot reach the server (an outage), the workflow reads the result from here instead.
 */
export async function writeOutcomeFile(workDir: string, experimentId: string, outcome: TrainingOutcome): Promise<void> {
  await replacePrivateFile(runFiles(workDir, experimentId).outcome, JSON.stringify(outcome));
}

export async function readOutcomeFile(workDir: string, experimentId: string): Promise<TrainingOutcome | undefined> {
  const text = await fs.readFile(runFiles(workDir, experimentId).outcome, 'utf8').catch(() => undefined);
  return text === undefined ? undefined : (JSON.parse(text) as TrainingOutcome);
}

/** Host-queue activity: asked before a run is declared lost (a worker restart or a server outage is not a lost run). */
export function createRunStatusActivities(deps: RunStatusDeps) {
  return {
    async runStatus(experimentId: string): Promise<HostRunStatus> {
      const outcome = await readOutcomeFile(deps.workDir, experimentId);
      if (outcome) return { state: 'finished', outcome };
      const files = runFiles(deps.workDir, experimentId);
      const pid = Number(await fs.readFile(files.pidFile, 'utf8').catch(() => ''));
      if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) return { state: 'running', supervisorPid: pid };
      // Still being prepared by a live worker (commit, data, setup): its train task can be followed again.
      const preparer = Number(await fs.readFile(files.preparing, 'utf8').catch(() => ''));
      if (Number.isInteger(preparer) && preparer > 0 && processAlive(preparer))
        return { state: 'running', supervisorPid: null };
      const exited = await fs.access(files.exit).then(
        () => true,
        () => false,
      );
      const recorded = await fs.access(files.record).then(
        () => true,
        () => false,
      );
      if (exited && recorded) return { state: 'running', supervisorPid: null };
      return { state: 'unknown', why: 'no result and no live supervisor for this run on the host' };
    },
  };
}
