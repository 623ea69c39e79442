/**
 * `npm run gpu-check [-- --gpus K] [--work-seconds S]`: the real-GPU check, for a machine with
 * NVIDIA GPUs, a driver and this project (nothing else is needed; torch is used when python3 has it).
 *
 * 1. `nvidia-smi topo -m` is parsed into NVLink islands and NUMA nodes (as a worker registers them).
 * 2. The telemetry query the workers' sampler makes is parsed for every GPU.
 * 3. A local stack (`expctl dev`, in a state directory of its own) runs one K-GPU run (K = every GPU
 *    of the most common class, or --gpus): the run must see exactly the GPUs of its lease, in order
 *    (torch.cuda.device_count() where torch is installed, else the CUDA_VISIBLE_DEVICES it got).
 * 4. With torch, the run keeps its GPUs busy with a matmul loop: the run's recorded telemetry must
 *    show utilization on each of them. Without torch this part is skipped, and the report says so.
 *
 * Prints one PASS/FAIL/SKIP line per check; exits 1 when any check fails.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import type { Client } from '@temporalio/client';
import { submitExperiment } from '../src/client/experiments.js';
import { acceleratorClassFromName, type GpuQueryRow } from '../src/domain/fleet.js';
import { IDLE_UTILIZATION_PERCENT, type GpuTelemetry } from '../src/domain/telemetry.js';
import { parseTopologyMatrix, type HostTopology } from '../src/domain/topology.js';
import { queryGpus } from '../src/gpu-worker/discover.js';
import { nvidiaSmiQuery } from '../src/gpu-worker/gpu-telemetry.js';
import { POOL_WORKFLOW_ID } from '../src/shared/constants.js';
import { freePort } from '../src/shared/ports.js';
import { connectClient } from '../src/temporal/connection.js';
import { experimentStateQuery, poolStateQuery } from '../src/workflows/definitions.js';

const EXPCTL = fileURLToPath(new URL('../bin/expctl.js', import.meta.url));
const HOST = 'gpu-check';

type Status = 'PASS' | 'FAIL' | 'SKIP';
const results: { status: Status; name: string }[] = [];
function report(status: Status, name: string, detail: string): void {
  results.push({ status, name });
  console.log(`${status} ${name}: ${detail}`);
}

function parseArgs(argv: string[]): { gpus?: number; workSeconds: number } {
  const options: { gpus?: number; workSeconds: number } = { workSeconds: 20 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const number = Number(argv[++i]);
      if (!Number.isInteger(number) || number < 1) throw new Error(`${arg} takes a positive whole number`);
      return number;
    };
    if (arg === '--gpus') options.gpus = value();
    else if (arg === '--work-seconds') options.workSeconds = value();
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: npm run gpu-check -- [--gpus K] [--work-seconds S]');
      process.exit(0);
    } else throw new Error(`unknown argument ${arg} (see --help)`);
  }
  return options;
}

/** 1. The topology a worker on this machine registers. */
async function checkTopology(): Promise<HostTopology> {
  const { stdout, exitCode, stderr } = await execa('nvidia-smi', ['topo', '-m'], { reject: false });
  const topology =
    exitCode === 0
      ? parseTopologyMatrix(stdout)
      : parseTopologyMatrix(`nvidia-smi topo -m exited ${exitCode}: ${stderr}`);
  if (topology.source === 'unavailable') report('FAIL', 'topology', topology.problem ?? 'unavailable');
  else
    report(
      'PASS',
      'topology',
      `NVLink islands ${JSON.stringify(topology.islands)}, NUMA node per GPU ${JSON.stringify(topology.numaNodes)}`,
    );
  return topology;
}

/** 2. The sampler's query, parsed for every GPU. */
async function checkTelemetryQuery(gpus: GpuQueryRow[]): Promise<void> {
  const answer = await nvidiaSmiQuery()();
  if (!('reading' in answer)) {
    report('FAIL', 'telemetry query', 'missing' in answer ? answer.missing : answer.error);
    return;
  }
  const rows = answer.reading.rows;
  const listed = rows.map((row) => row.index).join(',');
  const expected = gpus.map((gpu) => gpu.index).join(',');
  const text = rows
    .map(
      (row) =>
        `GPU${row.index} ${row.utilizationPercent ?? 'n/a'}% ${row.memoryUsedMb ?? 'n/a'} MiB ` +
        `${row.powerW ?? 'n/a'} W ${row.temperatureC ?? 'n/a'} C ${row.smClockMhz ?? 'n/a'} MHz`,
    )
    .join('; ');
  if (listed !== expected) report('FAIL', 'telemetry query', `lists GPUs ${listed}, nvidia-smi lists ${expected}`);
  else report('PASS', 'telemetry query', text);
}

/** What python3 on this machine offers the run: nothing, python alone, or torch with CUDA. */
async function pythonOffer(): Promise<{ python: boolean; torch: string | null }> {
  const probe = await execa(
    'python3',
    ['-c', 'import torch; assert torch.cuda.is_available(), "no CUDA"; print(torch.__version__)'],
    { reject: false },
  );
  if ((probe as { code?: string }).code === 'ENOENT') return { python: false, torch: null };
  // torch without CUDA (a CPU build) counts as no torch: it can neither count the GPUs nor load them.
  return { python: true, torch: probe.exitCode === 0 ? probe.stdout.trim() : null };
}

/** The run's program: reports what it sees, and with torch keeps every visible GPU busy a while. */
const CHECK_SCRIPT = `import json, os, time
seen = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "expctl_gpus": os.environ.get("EXPCTL_GPUS"),
        "nproc_per_node": os.environ.get("EXPCTL_NPROC_PER_NODE"), "master_port": os.environ.get("MASTER_PORT")}
try:
    import torch
    if not torch.cuda.is_available():
        torch = None
except ImportError:
    torch = None
if torch is not None:
    seen["torch"] = torch.__version__
    seen["device_count"] = torch.cuda.device_count()
    seen["names"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    work = [torch.randn(4096, 4096, device=f"cuda:{i}") for i in range(torch.cuda.device_count())]
    until = time.time() + float(os.environ["WORK_SECONDS"])
    while time.time() < until:
        for w in work:
            w @ w
        torch.cuda.synchronize()
with open(os.environ["GPU_CHECK_REPORT"], "w") as out:
    json.dump(seen, out)
print("---")
print("val_bpb:          1.000000")
`;

/** Without python3: the variables the run got, written by the shell. */
const SHELL_SCRIPT = `printf '{"cuda_visible_devices":"%s","expctl_gpus":"%s","nproc_per_node":"%s","master_port":"%s"}' \\
  "$CUDA_VISIBLE_DEVICES" "$EXPCTL_GPUS" "$EXPCTL_NPROC_PER_NODE" "$MASTER_PORT" > "$GPU_CHECK_REPORT"
printf -- '---\\nval_bpb:          1.000000\\n'
`;

async function checkRepo(dir: string): Promise<{ repo: string; commit: string }> {
  const repo = path.join(dir, 'repo');
  await fs.mkdir(repo);
  await fs.writeFile(path.join(repo, 'check_devices.py'), CHECK_SCRIPT);
  await fs.writeFile(path.join(repo, 'check_devices.sh'), SHELL_SCRIPT);
  const git = (...args: string[]) =>
    execa('git', ['-C', repo, ...args], {
      env: { GIT_AUTHOR_NAME: 'gpu-check', GIT_AUTHOR_EMAIL: 'gpu-check@localhost' },
    });
  await git('init', '-q', '-b', 'main');
  await git('add', '-A');
  await git('-c', 'user.name=gpu-check', '-c', 'user.email=gpu-check@localhost', 'commit', '-qm', 'gpu check');
  return { repo, commit: (await git('rev-parse', 'HEAD')).stdout.trim() };
}

/** `expctl dev` in a state directory of its own, on free ports; resolves once it is up. */
async function startLocalStack(home: string): Promise<{ child: ResultPromise; address: string }> {
  const grpcPort = await freePort();
  const env = {
    ...process.env,
    EXPCTL_HOME: home,
    EXPCTL_HOST: HOST,
    EXPCTL_TEMPORAL_PORT: String(grpcPort),
    EXPCTL_UI_PORT: String(await freePort()),
    TEMPORAL_ADDRESS: '',
    EXPCTL_KEY_FILE: '',
    // Samples often enough that a short run has several.
    EXPCTL_TELEMETRY_SECONDS: '1',
  };
  const child = execa(process.execPath, [EXPCTL, 'dev', '--no-demo'], {
    env,
    extendEnv: false,
    reject: false,
    all: true,
    buffer: { all: true },
    forceKillAfterDelay: false,
  });
  let output = '';
  child.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const deadline = Date.now() + 300_000;
  while (!output.includes('expctl dev is up')) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`expctl dev did not come up:\n${output.slice(-3000)}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return { child, address: `127.0.0.1:${grpcPort}` };
}

/** The indices of the GPUs the pool leased to the experiment, in the lease's order. */
async function leasedIndices(client: Client, experimentId: string): Promise<number[]> {
  const pool = await client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
  const entries = pool.slots.filter((entry) => entry.lease?.experimentId === experimentId);
  const order = entries[0]?.lease?.slotIds ?? entries.map((entry) => entry.slot.slotId);
  return order.flatMap((slotId) => entries.filter((entry) => entry.slot.slotId === slotId).map((e) => e.slot.index));
}

/** 3 and 4: a K-GPU run through the local stack sees its devices, and its telemetry moves. */
async function checkRun(
  gpus: GpuQueryRow[],
  k: number,
  offer: { python: boolean; torch: string | null },
  workSeconds: number,
): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-gpu-check-'));
  const home = path.join(dir, 'home');
  await fs.mkdir(home, { mode: 0o700 });
  const acceleratorClass = acceleratorClassFromName(gpus[0]!.name);
  const stack = await startLocalStack(home);
  try {
    // This process submits as the stack's local admin, to the stack's server.
    Object.assign(process.env, { EXPCTL_HOME: home, TEMPORAL_ADDRESS: stack.address, EXPCTL_KEY_FILE: '' });
    const client = await connectClient(process.env);
    const source = await checkRepo(dir);
    const reportFile = path.join(dir, 'seen.json');
    const { handle } = await submitExperiment(client, {
      tag: 'gpu-check',
      hypothesis: `a ${k}-GPU run sees exactly its GPUs`,
      category: 'other',
      command: offer.python ? ['python3', 'check_devices.py'] : ['sh', 'check_devices.sh'],
      repo: source.repo,
      commit: source.commit,
      timeBudgetSeconds: workSeconds + 120,
      requirements: { acceleratorClass, gpuMemoryMb: 0, runtimeTags: [], gpus: k },
      env: { GPU_CHECK_REPORT: reportFile, WORK_SECONDS: String(workSeconds) },
    });
    let leased: number[] = [];
    const watching = setInterval(() => {
      void leasedIndices(client, handle.workflowId)
        .then((indices) => {
          if (indices.length > 0) leased = indices;
        })
        .catch(() => undefined);
    }, 500);
    const result = await handle.result().finally(() => clearInterval(watching));
    const state = await handle.query(experimentStateQuery);
    if (result.status !== 'completed') {
      report('FAIL', `${k}-GPU run`, `ended ${result.status}: ${JSON.stringify(result).slice(0, 500)}`);
      return;
    }
    const seen = JSON.parse(await fs.readFile(reportFile, 'utf8')) as {
      cuda_visible_devices: string;
      expctl_gpus: string;
      device_count?: number;
      names?: string[];
    };
    const expected = leased.join(',');
    const devicesRight =
      seen.cuda_visible_devices === expected &&
      seen.expctl_gpus === String(k) &&
      (seen.device_count === undefined || seen.device_count === k);
    report(
      devicesRight ? 'PASS' : 'FAIL',
      `${k}-GPU run sees exactly its devices`,
      `leased GPUs ${expected || '(not seen)'}; the run got CUDA_VISIBLE_DEVICES=${seen.cuda_visible_devices}, ` +
        `EXPCTL_GPUS=${seen.expctl_gpus}` +
        (seen.device_count === undefined
          ? ' (no torch with CUDA: device count not checked)'
          : `, torch.cuda.device_count()=${seen.device_count} (${(seen.names ?? []).join(', ')})`),
    );
    checkRunTelemetry(state.training?.gpuTelemetry, k, offer);
  } finally {
    stack.child.kill('SIGINT');
    await stack.child;
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** 4. The run's recorded telemetry: every GPU sampled, and busy while the matmul loop ran. */
function checkRunTelemetry(
  telemetry: GpuTelemetry | undefined,
  k: number,
  offer: { python: boolean; torch: string | null },
): void {
  if (!telemetry?.available) {
    report('FAIL', 'run telemetry', telemetry ? telemetry.reason : 'the run recorded no GPU telemetry');
    return;
  }
  const lines = telemetry.gpus.map(
    (gpu) =>
      `GPU${gpu.index}: ${gpu.samples} samples, utilization mean ${gpu.utilizationMeanPercent?.toFixed(1) ?? 'n/a'}% ` +
      `max ${gpu.utilizationMaxPercent ?? 'n/a'}%, memory max ${gpu.memoryMaxMb ?? 'n/a'} MiB, power mean ` +
      `${gpu.powerMeanW?.toFixed(1) ?? 'n/a'} W, ${gpu.energyWh?.toFixed(3) ?? 'n/a'} Wh`,
  );
  const sampled = telemetry.gpus.length === k && telemetry.gpus.every((gpu) => gpu.samples > 0);
  report(sampled ? 'PASS' : 'FAIL', 'run telemetry sampled', lines.join('; '));
  if (!offer.torch) {
    report('SKIP', 'telemetry moves while a GPU works', 'python3 has no torch with CUDA: no GPU work to watch');
    return;
  }
  // Busier than the threshold under which a run is warned of idle GPUs.
  const busy = telemetry.gpus.every((gpu) => (gpu.utilizationMaxPercent ?? 0) > IDLE_UTILIZATION_PERCENT);
  report(
    busy ? 'PASS' : 'FAIL',
    'telemetry moves while a GPU works',
    telemetry.gpus.map((gpu) => `GPU${gpu.index} max ${gpu.utilizationMaxPercent ?? 'n/a'}%`).join(', '),
  );
}

/** K: --gpus, else every GPU of the most common class (one run cannot mix classes). */
function runSize(gpus: GpuQueryRow[], asked: number | undefined): { k: number; of: GpuQueryRow[] } {
  const byClass = new Map<string, GpuQueryRow[]>();
  for (const gpu of gpus) {
    const cls = acceleratorClassFromName(gpu.name);
    byClass.set(cls, [...(byClass.get(cls) ?? []), gpu]);
  }
  const largest = [...byClass.values()].sort((a, b) => b.length - a.length)[0]!;
  if (asked !== undefined && asked > largest.length)
    throw new Error(`--gpus ${asked}: this machine has at most ${largest.length} GPUs of one class`);
  return { k: asked ?? largest.length, of: largest };
}

const options = parseArgs(process.argv.slice(2));
const gpus = await queryGpus().catch((error: Error) => {
  report('FAIL', 'nvidia-smi', error.message);
  return undefined;
});
if (!gpus || gpus.length === 0) {
  if (gpus) report('FAIL', 'nvidia-smi', 'no nvidia-smi on PATH: this check needs a machine with NVIDIA GPUs');
  process.exit(1);
}
console.log(`nvidia-smi lists ${gpus.length} GPUs: ${gpus.map((gpu) => `${gpu.index} ${gpu.name}`).join(', ')}`);
await checkTopology();
await checkTelemetryQuery(gpus);
const offer = await pythonOffer();
console.log(
  offer.torch
    ? `python3 has torch ${offer.torch}`
    : offer.python
      ? 'python3 has no torch with CUDA: the run reports CUDA_VISIBLE_DEVICES, and the GPU-work check is skipped'
      : 'no python3: the run is a shell script, and the GPU-work check is skipped',
);
const { k, of } = runSize(gpus, options.gpus);
await checkRun(of, k, offer, options.workSeconds).catch((error: Error) =>
  report('FAIL', `${k}-GPU run`, error.stack ?? error.message),
);
const failed = results.filter((result) => result.status === 'FAIL');
console.log(
  failed.length === 0
    ? `gpu-check passed (${results.filter((r) => r.status === 'SKIP').length} skipped)`
    : `gpu-check FAILED: ${failed.map((r) => r.name).join(', ')}`,
);
process.exit(failed.length === 0 ? 0 : 1);
