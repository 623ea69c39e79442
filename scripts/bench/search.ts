/**
 * search: one agent, 8 fake GPUs, testing variants of its code — as batches of 8 (`expctl batch`)
 * against one `run` at a time, side by side. Prints variants evaluated per hour of wall time and
 * the fleet's utilization in each mode; the target is a batch throughput of at least 7x.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { submitBatch } from '../../src/client/batches.js';
import { submitExperiment } from '../../src/client/experiments.js';
import { commitVariant } from '../../src/client/source.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { fleetFigures, median, parseStamps } from './figures.js';
import type { BenchContext, TargetCheck } from './sections.js';
import { startWorkers, stopWorkers, TARGETS } from './sections.js';

/** Sleeps its budget, then reports the metric its variant sets (variant.txt), as train.py would. */
const SEARCH_JOB = `import os, time
start = time.time()
time.sleep(float(os.environ["BENCH_SECONDS"]))
end = time.time()
with open(os.environ["BENCH_STAMPS"], "a") as f:
    f.write(f"{os.environ['EXPCTL_EXPERIMENT_ID']} - {start:.6f} {end:.6f}\\n")
print("---")
print("val_bpb:          " + open("variant.txt").read().strip())
`;

interface SearchRepo {
  repo: string;
  git: (...args: string[]) => Promise<string>;
  base: string;
}

async function makeSearchRepo(dir: string): Promise<SearchRepo> {
  const repo = path.join(dir, 'search-repo');
  await fs.mkdir(repo, { recursive: true });
  await fs.writeFile(path.join(repo, 'search_job.py'), SEARCH_JOB);
  await fs.writeFile(path.join(repo, 'variant.txt'), '1.000000\n');
  const git = async (...args: string[]) =>
    (
      await execa('git', ['-C', repo, '-c', 'user.name=bench', '-c', 'user.email=bench@expctl.invalid', ...args])
    ).stdout.trim();
  await git('init', '-q');
  await git('add', '-A');
  await git('commit', '-qm', 'search base');
  return { repo, git, base: await git('rev-parse', 'HEAD') };
}

/** A variant: one commit on `base` that sets the metric. */
const variantCommit = (search: SearchRepo, base: string, metric: number, name: string) =>
  commitVariant(search.repo, base, 'variant.txt', `${metric.toFixed(6)}\n`, name, {
    name: 'bench',
    email: 'bench@expctl.invalid',
  });

/** A deterministic metric per variant: mostly no better, now and then a small improvement. */
const metricOf = (index: number) => 1 - 0.001 * ((index * 7) % 11) + 0.0005 * (index % 3);

/** Median seconds from each state to the next, over these experiments' timelines. */
async function phases(ctx: BenchContext, ids: string[]): Promise<string> {
  const spans = new Map<string, number[]>();
  for (const id of ids) {
    const { timeline } = await ctx.stack.client.workflow.getHandle(id).query(experimentStateQuery);
    for (let i = 1; i < timeline.length; i++) {
      const name = timeline[i - 1]!.status;
      const seconds = (Date.parse(timeline[i]!.at) - Date.parse(timeline[i - 1]!.at)) / 1000;
      spans.set(name, [...(spans.get(name) ?? []), seconds]);
    }
  }
  return [...spans].map(([name, values]) => `${name} ${median(values)!.toFixed(1)} s`).join(', ');
}

export async function searchSection(ctx: BenchContext): Promise<TargetCheck[]> {
  const slots = 8;
  const variants = ctx.search?.variants ?? (ctx.quick ? 16 : 64);
  const sequentialVariants = variants / 4;
  const jobSeconds = ctx.search?.seconds ?? (ctx.quick ? 2 : 5);
  console.log(
    `search: one agent, ${slots} fake GPUs, ${jobSeconds} s variants: ${variants} as batches of ${slots}, ` +
      `${sequentialVariants} as one run at a time`,
  );
  const workers = await startWorkers(ctx, ['search'], slots, 'bench-search');
  const search = await makeSearchRepo(ctx.dir);
  const template = (tag: string, stamps: string) => ({
    tag,
    category: 'hyperparams' as const,
    command: ['python3', 'search_job.py'],
    repo: search.repo,
    requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['bench-search'] },
    env: { BENCH_SECONDS: String(jobSeconds), BENCH_STAMPS: stamps },
    timeBudgetSeconds: Math.max(60, 2 * jobSeconds),
  });
  try {
    // Batches: propose 8, run them at once, advance to the winner, repeat.
    const batchStamps = path.join(ctx.dir, 'search-batch-stamps');
    const batchTag = `bench-search-b-${Date.now()}`;
    let base = search.base;
    const children: string[] = [];
    let t = performance.now();
    for (let round = 0; round * slots < variants; round++) {
      const commits = [];
      for (let i = 0; i < slots; i++)
        commits.push(await variantCommit(search, base, metricOf(round * slots + i), `variant ${round * slots + i}`));
      const { handle } = await submitBatch(ctx.stack.client, {
        template: template(batchTag, batchStamps),
        base,
        variants: commits.map((commit, i) => ({ commit, hypothesis: `variant ${round * slots + i}` })),
        credential: ctx.stack.credential,
      });
      const result = await handle.result();
      const failed = result.children.filter((child) => child.status !== 'completed');
      if (failed.length > 0) throw new Error(`search: a batch child ended ${failed[0]!.status}: ${failed[0]!.reason}`);
      base = result.commit;
      children.push(...result.children.map((child) => child.experiment_id!));
    }
    const batchSeconds = (performance.now() - t) / 1000;
    console.log(`  where a batch child's time went (median): ${await phases(ctx, children)}`);
    const batchFigures = fleetFigures(parseStamps(await fs.readFile(batchStamps, 'utf8')), slots, batchSeconds);

    // Sequential: one run at a time, keep or reset, as the autoresearch loop does.
    const seqStamps = path.join(ctx.dir, 'search-seq-stamps');
    const seqTag = `bench-search-s-${Date.now()}`;
    base = search.base;
    t = performance.now();
    for (let i = 0; i < sequentialVariants; i++) {
      const commit = await variantCommit(search, base, metricOf(i), `variant ${i}`);
      const { handle } = await submitExperiment(
        ctx.stack.client,
        { ...template(seqTag, seqStamps), hypothesis: `variant ${i}`, commit },
        { credential: ctx.stack.credential },
      );
      const result = await handle.result();
      if (result.status !== 'completed') throw new Error(`search: a run ended ${result.status}: ${result.reason}`);
      if (result.decision === 'keep') base = commit;
    }
    const seqSeconds = (performance.now() - t) / 1000;
    const seqFigures = fleetFigures(parseStamps(await fs.readFile(seqStamps, 'utf8')), slots, seqSeconds);

    const perHour = (count: number, s: number) => (count / s) * 3600;
    const batchRate = perHour(variants, batchSeconds);
    const seqRate = perHour(sequentialVariants, seqSeconds);
    const ratio = batchRate / seqRate;
    const line = (label: string, count: number, s: number, rate: number, utilization: number) =>
      `  ${label.padEnd(10)} ${count} variants in ${s.toFixed(1)} s = ${rate.toFixed(0)} variants/hour, ` +
      `fleet utilization ${(utilization * 100).toFixed(1)} %`;
    console.log(line('batch of 8', variants, batchSeconds, batchRate, batchFigures.utilization));
    console.log(line('sequential', sequentialVariants, seqSeconds, seqRate, seqFigures.utilization));
    console.log(`  ratio      ${ratio.toFixed(2)}x the variants per hour`);
    // The overheads measured here, with autoresearch's 5-minute budget instead of these short jobs.
    const roundOverhead = batchSeconds / Math.ceil(variants / slots) - jobSeconds;
    const runOverhead = seqSeconds / sequentialVariants - jobSeconds;
    const budget = 300;
    const projected = (slots * (budget + runOverhead)) / (budget + roundOverhead);
    console.log(
      `  overheads  ${roundOverhead.toFixed(1)} s per batch round, ${runOverhead.toFixed(1)} s per sequential run; ` +
        `with ${budget} s jobs they would give ${projected.toFixed(2)}x (a projection, not a measurement)`,
    );
    // Sequential runs are this section's baseline: the agent's loop one run at a time.
    return [
      {
        section: 'search',
        figure: 'variants/hour, batches of 8',
        value: batchRate.toFixed(0),
        bare: `${seqRate.toFixed(0)} seq`,
        ratio: `${ratio.toFixed(2)}x`,
        target: `>= ${TARGETS.batchRatio}x`,
        met: ratio >= TARGETS.batchRatio,
      },
      {
        section: 'search',
        figure: 'overhead per batch round',
        value: `${roundOverhead.toFixed(2)} s`,
        target: `<= ${TARGETS.roundOverheadSeconds} s`,
        met: roundOverhead <= TARGETS.roundOverheadSeconds,
      },
    ];
  } finally {
    await stopWorkers(workers);
  }
}
