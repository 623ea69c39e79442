/**
 * The bench's jobs: one script that sleeps for its budget and prints train.py's summary block, run
 * either by expctl (one experiment each) or bare under `xargs -P N`, both stamping when they ran.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import type { Client } from '@temporalio/client';
import { submitExperiment } from '../../src/client/experiments.js';
import type { Credential } from '../../src/security/credentials.js';
import type { ExperimentResult } from '../../src/domain/experiment.js';
import { parseStamps, type JobSpan } from './figures.js';

const JOB = `import os, time
start = time.time()
time.sleep(float(os.environ["BENCH_SECONDS"]))
end = time.time()
job = os.environ.get("EXPCTL_EXPERIMENT_ID") or os.environ["BENCH_JOB"]
with open(os.environ["BENCH_STAMPS"], "a") as f:
    f.write(f"{job} {os.environ.get('BENCH_SLOT', '-')} {start:.6f} {end:.6f}\\n")
print("step 1/1 | loss 1.0")
print("---")
print("val_bpb:          1.000000")
`;

export interface JobRepo {
  repo: string;
  commit: string;
  script: string;
}

/** A git repository whose one commit holds the bench job. */
export async function makeJobRepo(dir: string): Promise<JobRepo> {
  const repo = path.join(dir, 'job-repo');
  await fs.mkdir(repo, { recursive: true });
  await fs.writeFile(path.join(repo, 'bench_job.py'), JOB);
  const git = (...args: string[]) =>
    execa('git', ['-C', repo, '-c', 'user.name=bench', '-c', 'user.email=bench@expctl.invalid', ...args]);
  await git('init', '-q');
  await git('add', '-A');
  await git('commit', '-qm', 'bench job');
  return { repo, commit: (await git('rev-parse', 'HEAD')).stdout.trim(), script: path.join(repo, 'bench_job.py') };
}

/** The same jobs bare: `xargs -P parallel`, each job told its xargs slot. */
export async function runBare(
  repo: JobRepo,
  options: { jobs: number; seconds: number; parallel: number; stamps: string },
): Promise<{ spans: JobSpan[]; makespanSeconds: number }> {
  await fs.rm(options.stamps, { force: true });
  const input = Array.from({ length: options.jobs }, (_, i) => `bare-${i}`).join('\n');
  const t = performance.now();
  await execa(
    'xargs',
    [
      '-P',
      String(options.parallel),
      '--process-slot-var=BENCH_SLOT',
      '-I{}',
      'env',
      'BENCH_JOB={}',
      'python3',
      repo.script,
    ],
    { input, env: { BENCH_SECONDS: String(options.seconds), BENCH_STAMPS: options.stamps } },
  );
  const makespanSeconds = (performance.now() - t) / 1000;
  return { spans: parseStamps(await fs.readFile(options.stamps, 'utf8')), makespanSeconds };
}

export interface ExpctlJobs {
  spans: JobSpan[];
  makespanSeconds: number;
  submitSeconds: number;
  /** Epoch ms when submission began and when the last result arrived. */
  startedAtMs: number;
  doneAtMs: number;
  results: ExperimentResult[];
}

/** The same jobs as experiments, submitted at once from this process; each span's slot is its run's GPU. */
export async function runExpctl(
  client: Client,
  credential: Credential,
  repo: JobRepo,
  options: { jobs: number; seconds: number; stamps: string; tag: string; runtimeTag: string },
): Promise<ExpctlJobs> {
  await fs.rm(options.stamps, { force: true });
  const startedAtMs = Date.now();
  const t = performance.now();
  const submitted = await Promise.all(
    Array.from({ length: options.jobs }, (_, i) =>
      submitExperiment(
        client,
        {
          tag: options.tag,
          hypothesis: `bench job ${i}`,
          category: 'other',
          command: ['python3', 'bench_job.py'],
          repo: repo.repo,
          commit: repo.commit,
          idempotencyKey: `${options.tag}-${i}`,
          requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [options.runtimeTag] },
          env: { BENCH_SECONDS: String(options.seconds), BENCH_STAMPS: options.stamps },
          timeBudgetSeconds: Math.max(60, options.seconds * 4),
        },
        { credential },
      ),
    ),
  );
  const submitSeconds = (performance.now() - t) / 1000;
  const results = await Promise.all(submitted.map(({ handle }) => handle.result()));
  const makespanSeconds = (performance.now() - t) / 1000;
  const doneAtMs = Date.now();
  const failed = results.filter((result) => result.status !== 'completed');
  if (failed.length > 0)
    throw new Error(`${failed.length} bench runs did not complete: ${failed[0]!.status}: ${failed[0]!.reason}`);
  const slotOf = new Map(results.map((result) => [result.experiment_id!, result.gpu!]));
  const spans = parseStamps(await fs.readFile(options.stamps, 'utf8')).map((span) => ({
    ...span,
    slot: slotOf.get(span.job) ?? span.slot,
  }));
  return { spans, makespanSeconds, submitSeconds, startedAtMs, doneAtMs, results };
}
