/**
 * `npm run bench`: speed figures of the orchestration itself, on a real Temporal dev server.
 * Prints medians and ratios (these machines are shared and noisy); asserts nothing.
 *   - overhead: submit → result of a trivial training command, vs. the command run directly
 *   - throughput: lease acquire/release cycles through the pool workflow
 *   - placement: the pure placement rule on a 64-GPU fleet with 256 waiting requests
 *   - catalog: 10,000 records, then history, summary and suggest times (scripts/bench-catalog.ts)
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { execa } from 'execa';
import { submitExperiment } from '../src/client/experiments.js';
import { ensureLocalAdmin, loadIssuerPublicKey } from '../src/security/credentials.js';
import { assignSlots, DEFAULT_PLACEMENT_POLICY, type LeaseRequest, type SlotView } from '../src/domain/placement.js';
import { createGpuWorker } from '../src/gpu-worker/worker.js';
import { createOrchestratorWorker } from '../src/orchestrator/worker.js';
import { CONTROL_TASK_QUEUE } from '../src/shared/constants.js';
import { deriveKey, ensureKeyring } from '../src/security/keyring.js';
import { installWorkerRuntime } from '../src/shared/runtime.js';
import { dataConverter } from '../src/temporal/connection.js';
import { freePort, startDevServer } from '../src/temporal/dev-server.js';
import { ensureTemporalCli } from '../src/temporal/temporal-cli.js';
import { leaseCyclerWorkflow } from '../src/workflows/lease-cycler.js';
import { benchCatalog } from './bench-catalog.js';

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const ms = (value: number) => `${value.toFixed(1)} ms`;

async function main(): Promise<void> {
  installWorkerRuntime();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-bench-'));
  const server = await startDevServer({
    binary: await ensureTemporalCli(),
    dbFile: path.join(dir, 'temporal.db'),
    ip: '127.0.0.1',
    grpcPort: await freePort(),
    uiPort: await freePort(),
    logFile: path.join(dir, 'temporal.log'),
  });
  const nativeConnection = await NativeConnection.connect({ address: server.address });
  const connection = await Connection.connect({ address: server.address });
  // Payloads encrypted as in production (the codec's cost is part of the overhead measured).
  const keys = { ...process.env, EXPCTL_KEY_FILE: path.join(dir, 'keys', 'payload-keys.json'), EXPCTL_KEY_COMMAND: '' };
  await ensureKeyring(keys);
  const converter = await dataConverter(keys);
  const client = new Client({ connection, dataConverter: converter });
  // An issuer and an admin credential of the bench's own, as `expctl dev` makes them.
  const home = { ...process.env, EXPCTL_HOME: dir, EXPCTL_CREDENTIAL_FILE: path.join(dir, 'credential.json') };
  const { credential } = ensureLocalAdmin(home);
  const orchestrator = await createOrchestratorWorker({
    connection: nativeConnection,
    namespace: 'default',
    client,
    dataConverter: converter,
    catalogPath: path.join(dir, 'catalog.sqlite'),
    issuer: loadIssuerPublicKey(home),
    secretHashKey: (await deriveKey('secret-hash', keys)).key,
  });
  const gpu = await createGpuWorker({
    connection: nativeConnection,
    namespace: 'default',
    client,
    dataConverter: converter,
    host: 'bench',
    cpuSlots: 4,
    workDir: path.join(dir, 'worker'),
    log: () => undefined,
    credential,
  });
  const running = Promise.all([orchestrator.run(), gpu.run()]);
  try {
    // A repository with a trivial "training" that prints the metric block.
    const repo = path.join(dir, 'repo');
    await fs.mkdir(repo);
    await fs.writeFile(
      path.join(repo, 'train.py'),
      'print("step 1/1 | loss 1.0")\nprint("---")\nprint("val_bpb: 1.0")\n',
    );
    const git = (...args: string[]) =>
      execa('git', ['-C', repo, '-c', 'user.name=bench', '-c', 'user.email=bench@expctl.invalid', ...args]);
    await git('init', '-q');
    await git('add', '-A');
    await git('commit', '-qm', 'bench');
    const commit = (await git('rev-parse', 'HEAD')).stdout.trim();

    const direct: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      await execa('python3', ['train.py'], { cwd: repo });
      direct.push(performance.now() - t);
    }
    const orchestrated: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      const { handle } = await submitExperiment(
        client,
        { tag: 'bench', hypothesis: 'overhead', category: 'other', command: ['python3', 'train.py'], repo, commit },
        { credential },
      );
      const result = await handle.result();
      if (result.status !== 'completed') throw new Error(`bench run ended ${result.status}: ${result.reason}`);
      orchestrated.push(performance.now() - t);
    }
    console.log('experiment overhead (10 sequential runs of a trivial train.py)');
    console.log(`  direct python3 train.py:        median ${ms(median(direct))}`);
    console.log(`  expctl submit -> result:        median ${ms(median(orchestrated))}`);
    console.log(
      `  orchestration overhead per run: median ${ms(median(orchestrated) - median(direct))} (ratio ${(median(orchestrated) / median(direct)).toFixed(1)}x)`,
    );

    const t = performance.now();
    const cyclers = 4;
    const perCycler = 50;
    await Promise.all(
      Array.from({ length: cyclers }, (_, i) =>
        client.workflow.execute(leaseCyclerWorkflow, {
          workflowId: `bench-cycler-${i}`,
          taskQueue: CONTROL_TASK_QUEUE,
          args: [{ remaining: perCycler, requirements: { acceleratorClass: 'any', gpuMemoryMb: 0, runtimeTags: [] } }],
        }),
      ),
    );
    const seconds = (performance.now() - t) / 1000;
    console.log(
      `pool: ${cyclers * perCycler} lease acquire/release cycles by ${cyclers} clients in ${seconds.toFixed(1)} s = ${((cyclers * perCycler) / seconds).toFixed(1)} cycles/s`,
    );
  } finally {
    await gpu.shutdown();
    orchestrator.shutdown();
    await running;
    await nativeConnection.close();
    await connection.close();
    await server.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }

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
  console.log(`placement: 64 slots x 256 waiting requests, one scheduling pass: median ${ms(median(samples))}`);
}

await main();
await benchCatalog();
process.exit(0);
