/**
 * `npm run bench [-- SECTION...] [--quick]`: speed figures of expctl on a real Temporal dev server,
 * with the orchestrator and workers as separate processes on fake GPUs, each set against the same
 * jobs run bare in the same session. Prints figures, ratios and the targets they are held to;
 * asserts nothing (these machines are shared and noisy: quote medians and ratios).
 *   - fleet: 8 fake GPUs, 40 jobs of 5 s submitted at once, against `xargs -P 8`
 *   - overhead: a 1 s job through the API and `expctl run`, against the bare script, with its phases
 *   - scale: 64 fake GPUs across 4 worker processes, 400 jobs of 1 s, against `xargs -P 64`
 *   - detect: a worker SIGKILLed during a run, until the run ends and until its host shows offline
 *   - pool: lease acquire/release cycles through the pool workflow
 *   - placement: the pure placement rule on a 64-GPU fleet with 256 waiting requests
 *   - packing: gang leases (K of 1, 2, 4, 8) on 2 hosts x 8 fake GPUs in virtual time: GPU-seconds
 *     used over available beside an ideal packing, and the K=8 runs' waits, with and without
 *     reservations (scripts/bench-packing.ts)
 *   - catalog: 10,000 records, then history, summary and suggest times, on SQLite and PostgreSQL
 *     (scripts/bench-catalog.ts)
 *   - store: the fleet store's upload and download throughput, filesystem and S3 (a throwaway
 *     SeaweedFS), beside a plain copy of the same bytes, and the restore time of a 1 GiB checkpoint
 *     (scripts/bench-store.ts)
 *   - search: one agent, 8 fake GPUs: variants per hour as batches of 8 against one run at a time
 *     (64 variants of 5 s; `--search-seconds S --search-variants N` for longer jobs, e.g. nearer
 *     autoresearch's 300 s budget)
 *   - sim: a simulated fleet (125 hosts x 8 fake GPUs) on the real pool, fed runs of 60 s at the rate
 *     that keeps it busy: placements/s, grant latency, the pool's events/s and continue-as-new rate,
 *     the server's and orchestrator's CPU (scripts/bench-sim.ts; `--sim-hosts N --sim-job-seconds S
 *     --sim-seconds S --sim-load F` (the share of its capacity offered, default 1), and `--sim-search` for the largest fleet whose grant p95 stays under 1 s)
 * `--quick` runs smaller versions of each (for CI and a first look).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { execa } from 'execa';
import { assignSlots, DEFAULT_PLACEMENT_POLICY, type LeaseRequest, type SlotView } from '../src/domain/placement.js';
import { CONTROL_TASK_QUEUE } from '../src/shared/constants.js';
import { leaseCyclerWorkflow } from '../src/workflows/lease-cycler.js';
import { benchCatalog } from './bench-catalog.js';
import { benchPacking } from './bench-packing.js';
import { simSection, type SimOptions } from './bench-sim.js';
import { benchStore } from './bench-store.js';
import { median } from './bench/figures.js';
import { makeJobRepo } from './bench/jobs.js';
import {
  detectSection,
  fleetSection,
  overheadSection,
  scaleSection,
  type BenchContext,
  type TargetCheck,
} from './bench/sections.js';
import { searchSection } from './bench/search.js';
import { DrillStack } from './drills/stack.js';

const ms = (value: number) => `${value.toFixed(1)} ms`;

/** pool: acquire/release cycles by 4 clients through the real lease protocol, on a worker of its own. */
async function poolSection(ctx: BenchContext): Promise<TargetCheck[]> {
  const worker = await ctx.stack.startWorker('pool', 4, 'bench-pool');
  try {
    const cyclers = 4;
    const perCycler = ctx.quick ? 10 : 50;
    const t = performance.now();
    await Promise.all(
      Array.from({ length: cyclers }, (_, i) =>
        ctx.stack.client.workflow.execute(leaseCyclerWorkflow, {
          workflowId: `bench-cycler-${Date.now()}-${i}`,
          taskQueue: CONTROL_TASK_QUEUE,
          args: [
            {
              remaining: perCycler,
              requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: ['bench-pool'] },
            },
          ],
        }),
      ),
    );
    const seconds = (performance.now() - t) / 1000;
    const rate = (cyclers * perCycler) / seconds;
    console.log(
      `pool: ${cyclers * perCycler} lease acquire/release cycles by ${cyclers} clients in ${seconds.toFixed(1)} s = ${rate.toFixed(1)} cycles/s`,
    );
    // No target: the issue reports it (12.1 per s before it) beside the simulated fleet's placements.
    return [{ section: 'pool', figure: 'lease cycles per s', value: rate.toFixed(1), target: '-', met: null }];
  } finally {
    await worker.kill('SIGTERM');
  }
}

function placementSection(): void {
  const classes = ['h100', 'a100', 'l4', 'a10g'];
  const slots: SlotView[] = Array.from({ length: 64 }, (_, i) => ({
    slotId: `h${i >> 3}/gpu${i & 7}`,
    host: `h${i >> 3}`,
    index: i & 7,
    uuid: `u${i}`,
    name: 'gpu',
    acceleratorClass: classes[i % 4]!,
    memoryMb: [81559, 40960, 23034, 24576][i % 4]!,
    taskQueue: `q${i}`,
    runtimeTags: [],
    state: i % 3 === 0 ? 'leased' : 'idle',
    draining: false,
  }));
  const queue: LeaseRequest[] = Array.from({ length: 256 }, (_, i) => ({
    experimentId: `e${i}`,
    requirements: { acceleratorClass: i % 5 === 0 ? 'h100' : 'any', gpuMemoryMb: (i % 4) * 10_000, runtimeTags: [] },
    priority: i % 3,
    enqueuedAt: i,
  }));
  const samples: number[] = [];
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    assignSlots(slots, queue, DEFAULT_PLACEMENT_POLICY, 1000);
    samples.push(performance.now() - t);
  }
  console.log(`placement: 64 slots x 256 waiting requests, one scheduling pass: median ${ms(median(samples)!)}`);
}

const SECTIONS = {
  fleet: fleetSection,
  overhead: overheadSection,
  scale: scaleSection,
  detect: detectSection,
  pool: poolSection,
  search: searchSection,
  sim: simSection,
} as const;
const OFFLINE = ['placement', 'packing', 'catalog', 'store'] as const;
const ALL = [...Object.keys(SECTIONS), ...OFFLINE];

interface BenchArgs {
  quick: boolean;
  sections: string[];
  /** search: the variants' length in seconds and how many run as batches (a quarter as many one at a time). */
  search: { seconds?: number; variants?: number };
  /** sim: the fleet's size, the jobs' length, the stream's length, and whether to search for the largest fleet. */
  sim: SimOptions;
}

function parseArgs(argv: string[]): BenchArgs {
  const sections: string[] = [];
  const search: BenchArgs['search'] = {};
  const sim: SimOptions = {};
  let quick = false;
  const usage = `usage: npm run bench -- [--quick] [--search-seconds S] [--search-variants N] [--sim-hosts N] [--sim-job-seconds S] [--sim-seconds S] [--sim-load F] [--sim-search] [${ALL.join('|')}]...`;
  const count = (flag: string, value: string | undefined, multipleOf = 1) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n <= 0 || n % multipleOf !== 0)
      throw new Error(
        `${flag} takes a positive whole number${multipleOf > 1 ? ` divisible by ${multipleOf}` : ''}; ${usage}`,
      );
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--quick') quick = true;
    else if (arg === '--search-seconds') search.seconds = count(arg, argv[++i]);
    else if (arg === '--search-variants') search.variants = count(arg, argv[++i], 8);
    else if (arg === '--sim-hosts') sim.hosts = count(arg, argv[++i]);
    else if (arg === '--sim-job-seconds') sim.jobSeconds = count(arg, argv[++i]);
    else if (arg === '--sim-seconds') sim.seconds = count(arg, argv[++i]);
    else if (arg === '--sim-search') sim.search = true;
    else if (arg === '--sim-load') {
      const load = Number(argv[++i]);
      if (!(load > 0 && load <= 1))
        throw new Error(`--sim-load takes a share of the fleet's capacity, above 0 and at most 1; ${usage}`);
      sim.load = load;
    } else if (arg === '--help' || arg === '-h') {
      console.log(usage);
      process.exit(0);
    } else if (ALL.includes(arg)) sections.push(arg);
    else throw new Error(`unknown bench section ${arg}: one of ${ALL.join(', ')}`);
  }
  if (sim.seconds !== undefined && sim.seconds <= (sim.jobSeconds ?? (quick ? 20 : 60)))
    throw new Error(
      `--sim-seconds must outlast one job (--sim-job-seconds): the figures come from after the first jobs end`,
    );
  return { quick, sections: sections.length > 0 ? sections : ALL, search, sim };
}

/** Every figure: expctl's, the same jobs' bare where there is a bare run, their ratio, the target, the verdict. */
function printTargets(checks: TargetCheck[]): void {
  if (checks.length === 0) return;
  const row = (cells: string[]) =>
    `  ${cells[0]!.padEnd(9)} ${cells[1]!.padEnd(30)} ${cells[2]!.padStart(10)} ${cells[3]!.padStart(11)} ${cells[4]!.padStart(7)}  ${cells[5]!.padEnd(12)} ${cells[6]}`;
  console.log('\ntargets (bare: the same jobs without expctl, in this run; ratio: expctl / bare)');
  console.log(row(['section', 'figure', 'expctl', 'bare', 'ratio', 'target', '']));
  for (const check of checks) {
    const verdict =
      check.target === '-' ? 'no target' : check.met === null ? 'no figure' : check.met ? 'met' : 'MISSED';
    console.log(
      row([check.section, check.figure, check.value, check.bare ?? '-', check.ratio ?? '-', check.target, verdict]),
    );
  }
}

async function main(): Promise<void> {
  const { quick, sections, search, sim } = parseArgs(process.argv.slice(2));
  const live = sections.filter((name): name is keyof typeof SECTIONS => name in SECTIONS);
  const checks: TargetCheck[] = [];
  // python3 itself, not a version manager's shim (pyenv's costs seconds per start under load),
  // for the bare jobs and every expctl process alike.
  const python = (await execa('python3', ['-c', 'import sys; print(sys.executable)'])).stdout.trim();
  process.env.PATH = `${path.dirname(python)}${path.delimiter}${process.env.PATH}`;
  if (live.length > 0) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-bench-'));
    // Payloads encrypted with a keyring of the bench's own, as in production (part of the cost measured).
    process.env.EXPCTL_KEY_FILE = path.join(dir, 'keys', 'payload-keys.json');
    process.env.EXPCTL_KEY_COMMAND = '';
    const stack = new DrillStack({ dir, namespace: 'default', log: () => undefined });
    await stack.start();
    try {
      const ctx: BenchContext = { stack, dir, repo: await makeJobRepo(dir), quick, search };
      for (const name of live) {
        checks.push(...(await (name === 'sim' ? simSection(ctx, sim) : SECTIONS[name](ctx))));
        console.log('');
      }
    } finally {
      await stack.stop();
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
  if (sections.includes('placement')) placementSection();
  if (sections.includes('packing')) benchPacking(quick);
  if (sections.includes('catalog')) await benchCatalog(quick);
  if (sections.includes('store')) await benchStore(quick);
  printTargets(checks);
}

await main();
process.exit(0);
