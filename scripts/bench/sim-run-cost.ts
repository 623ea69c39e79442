/**
 * What one real run writes to Temporal, for sizing a production server from the simulated fleet's
 * figures: a plain 1 s experiment on one fake GPU, its own history's events and bytes, and what it
 * added to its tag's history (the tag's first run starts it, so the second is measured).
 */
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { submitExperiment } from '../../src/client/experiments.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import type { BenchContext } from './sections.js';
import { startWorkers, stopWorkers } from './sections.js';

export interface HistoryCost {
  events: number;
  bytes: number;
}

export interface RunCost {
  experiment: HistoryCost;
  tag: HistoryCost;
}

async function historyOf(client: Client, workflowId: string): Promise<HistoryCost> {
  const description = await client.workflow.getHandle(workflowId).describe();
  return { events: description.historyLength, bytes: Number(description.historySize ?? 0) };
}

export async function costOfOneRun(ctx: BenchContext): Promise<RunCost> {
  const runtimeTag = 'bench-sim-cost';
  const workers = await startWorkers(ctx, ['sim-cost'], 1, runtimeTag);
  const tag = `bench-sim-cost-${Date.now()}`;
  const runOnce = async (i: number) => {
    const { handle } = await submitExperiment(
      ctx.stack.client,
      {
        tag,
        hypothesis: `what one run writes ${i}`,
        category: 'other',
        command: ['python3', 'bench_job.py'],
        repo: ctx.repo.repo,
        commit: ctx.repo.commit,
        requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [runtimeTag] },
        env: { BENCH_SECONDS: '1', BENCH_STAMPS: path.join(ctx.dir, 'sim-cost-stamps') },
      },
      { credential: ctx.stack.credential },
    );
    const result = await handle.result();
    if (result.status !== 'completed') throw new Error(`the measured run ended ${result.status}: ${result.reason}`);
    return handle.workflowId;
  };
  try {
    await runOnce(0);
    const tagBefore = await historyOf(ctx.stack.client, tagWorkflowId(tag));
    const experimentId = await runOnce(1);
    const tagAfter = await historyOf(ctx.stack.client, tagWorkflowId(tag));
    return {
      experiment: await historyOf(ctx.stack.client, experimentId),
      tag: { events: tagAfter.events - tagBefore.events, bytes: tagAfter.bytes - tagBefore.bytes },
    };
  } finally {
    await stopWorkers(workers);
  }
}
