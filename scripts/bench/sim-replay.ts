import type { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { WORKFLOW_INTERCEPTOR_MODULES, WORKFLOWS_PATH } from '../../src/roots/orchestrator.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { historyExcerpt } from './history-excerpt.js';

/** What replaying the pool's runs found: how many were replayed, and each failure's first line. */
export interface PoolReplay {
  runs: number;
  failures: string[];
}

/**
 * Replays the pool's runs (`runIds`, oldest first) against today's workflow code: a busy pool's
 * history, with its updates, signals and background calls interleaved, is the hardest test of its
 * determinism, and a worker that loses its cache (a restart, a timed-out task) replays exactly this.
 */
export async function replayPoolRuns(client: Client, runIds: string[]): Promise<PoolReplay> {
  const fetched = runIds.map((runId) => ({
    // Named by run, so a failure says which run of the chain it was.
    workflowId: `${POOL_WORKFLOW_ID}/${runId}`,
    history: client.workflow.getHandle(POOL_WORKFLOW_ID, runId).fetchHistory(),
  }));
  const histories = new Map(fetched.map(({ workflowId, history }) => [workflowId, history]));
  const failures: string[] = [];
  for await (const result of Worker.runReplayHistories(
    {
      workflowsPath: WORKFLOWS_PATH,
      interceptors: { workflowModules: WORKFLOW_INTERCEPTOR_MODULES },
      replayName: 'expctl-sim-replay',
      dataConverter: client.options.dataConverter,
    },
    (async function* () {
      for (const { workflowId, history } of fetched) yield { workflowId, history: await history };
    })(),
  )) {
    if (!result.error) continue;
    const message = result.error.message;
    failures.push(`${result.workflowId}: ${message.split('\n')[0]}`);
    // Where it stopped: the events before the one the code did not expect (structure, no payloads).
    const at = /HistoryEvent\(id: (\d+)/.exec(message)?.[1];
    const history = await histories.get(result.workflowId);
    if (at !== undefined && history?.events) failures.push(historyExcerpt(history.events, Number(at)).join('\n    '));
  }
  return { runs: runIds.length, failures };
}
