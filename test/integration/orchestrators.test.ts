import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { isTerminal } from '../../src/domain/experiment.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { tagStateQuery } from '../../src/workflows/definitions.js';
import { postgresCatalogUrl, stopTestPostgres } from '../helpers/catalogs.js';
import { EXPCTL } from '../helpers/cli.js';
import { postgresUnavailable } from '../helpers/postgres.js';
import { makeRepo } from '../helpers/repo.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { waitFor } from '../helpers/wait.js';

const SKIP = postgresUnavailable();
if (SKIP) console.warn(`orchestrators.test.ts skipped: ${SKIP}`);

const RUNS = 8;
let stack: TestStack;
let dir: string;
let url: string;
const orchestrators: { child: ResultPromise; log: string[] }[] = [];

/** `expctl orchestrator` as its own process on the shared PostgreSQL catalog; resolves once it polls. */
async function startOrchestrator(name: string): Promise<{ child: ResultPromise; log: string[] }> {
  const log: string[] = [];
  const child = execa(process.execPath, [EXPCTL, 'orchestrator'], {
    env: {
      TEMPORAL_ADDRESS: stack.address,
      TEMPORAL_NAMESPACE: stack.namespace,
      EXPCTL_CATALOG_URL: url,
      EXPCTL_HOME: path.join(dir, name),
    },
    reject: false,
  });
  child.stderr?.on('data', (chunk: Buffer) => log.push(String(chunk)));
  await waitFor(async () => log.join('').includes('polling expctl-control'), 120_000);
  const started = { child, log };
  orchestrators.push(started);
  return started; // wrapped: an execa subprocess is thenable
}

beforeAll(async () => {
  if (SKIP) return;
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-orchestrators-'));
  url = await postgresCatalogUrl();
  stack = await startStack({ name: 'orchestrators', catalog: url, orchestrator: false, gpuWorker: false });
});
afterAll(async () => {
  for (const { child } of orchestrators) child.kill('SIGKILL');
  await stack?.stop();
  await stopTestPostgres();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

describe.skipIf(SKIP)('two orchestrators on one PostgreSQL catalog', () => {
  it('one is SIGKILLed mid-campaign: every run completes, recorded once, and the tag decides each once', async () => {
    const first = await startOrchestrator('first');
    await startOrchestrator('second');
    await stack.addGpuWorker({ host: 'shared', cpuSlots: 2 });
    const source = await makeRepo();
    const handles: Awaited<ReturnType<typeof submitExperiment>>['handle'][] = [];
    for (let i = 0; i < RUNS; i++) {
      const { handle } = await submitExperiment(stack.client, {
        tag: 'two-orchestrators',
        hypothesis: `run ${i}`,
        category: 'hyperparams',
        command: ['python3', 'train.py'],
        repo: source.repo,
        commit: source.commit,
        env: { VAL_BPB: (1.5 - i * 0.01).toFixed(3), STEPS: '4', STEP_SECONDS: '0.5' },
      });
      handles.push(handle);
    }
    // Mid-campaign: some runs decided, others queued or training.
    await waitFor(async () => {
      const done = await Promise.all(handles.map(async (h) => (await h.describe()).status.name !== 'RUNNING'));
      return done.filter(Boolean).length >= 2;
    }, 180_000);
    first.child.kill('SIGKILL');
    await first.child;

    const results = await Promise.all(handles.map((handle) => handle.result()));
    expect(results.map((r) => r.status)).toEqual(Array(RUNS).fill('completed'));

    // The record: each run once, with one terminal event, its status and its decision.
    const rows = await stack.catalog.list({ tag: 'two-orchestrators', order: 'oldest' });
    expect(rows.map((row) => row.id).sort()).toEqual(handles.map((h) => h.workflowId).sort());
    for (const handle of handles) {
      const record = (await stack.catalog.get(handle.workflowId))!;
      expect(record.status).toBe('completed');
      expect(record.events.filter((e) => isTerminal(e.status))).toHaveLength(1);
      expect(record.decision).not.toBeNull();
    }
    // The tag decided each run exactly once, in one sequence, and the record agrees with it.
    expect(rows.map((row) => row.sequence).sort((a, b) => a! - b!)).toEqual(
      Array.from({ length: RUNS }, (_, i) => i + 1),
    );
    const tag = await stack.client.workflow.getHandle(tagWorkflowId('two-orchestrators')).query(tagStateQuery);
    const bestKept = Math.min(...rows.filter((row) => row.decision === 'keep').map((row) => row.metric!));
    expect(Math.min(...Object.values(tag.best).map((best) => best.metric))).toBe(bestKept);

    // Any host with the URL reads the same record, straight from PostgreSQL.
    const history = await execa(process.execPath, [EXPCTL, 'history', '--tag', 'two-orchestrators', '--json'], {
      env: { EXPCTL_CATALOG_URL: url, EXPCTL_CATALOG: path.join(dir, 'no-such.sqlite') },
      reject: false,
    });
    expect(history.stderr).toBe('');
    expect((JSON.parse(history.stdout) as { id: string }[]).map((row) => row.id).sort()).toEqual(
      rows.map((row) => row.id).sort(),
    );

    // Both orchestrators did the work: workflow tasks of these runs (their control steps run as
    // local activities inside them) completed on each of them.
    const identities = new Set<string>();
    for (const handle of handles)
      for (const event of (await handle.fetchHistory()).events ?? [])
        if (event.workflowTaskCompletedEventAttributes?.identity)
          identities.add(event.workflowTaskCompletedEventAttributes.identity);
    expect([...identities].some((identity) => identity.startsWith(`${first.child.pid}@`))).toBe(true);
    expect([...identities].some((identity) => identity.startsWith(`${orchestrators[1]!.child.pid}@`))).toBe(true);
  });
});
