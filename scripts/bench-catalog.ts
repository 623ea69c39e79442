/**
 * Catalog at scale: fills a catalog with 10,000 experiment records across 20 tags through the same
 * write path the workers use, then times `history`, `report summary` and `suggest`. Prints medians,
 * for SQLite and for PostgreSQL: the server at BENCH_CATALOG_URL, else a throwaway one started with
 * the machine's binaries (the tests' own), else it says why PostgreSQL was left out.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Catalog } from '../src/catalog/catalog.js';
import { resultRuns, summarize, toRunSummary } from '../src/catalog/reports.js';
import { applyOutcome, newTagState, type TagState } from '../src/domain/decision.js';
import { NO_TIMINGS } from '../src/domain/experiment.js';
import { CATEGORIES, parseExperimentRequest } from '../src/domain/request.js';
import { suggest } from '../src/domain/strategy.js';
import { startPostgres } from '../test/helpers/postgres.js';

const TAGS = 20;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
async function time(label: string, repeat: number, fn: () => unknown): Promise<void> {
  const samples: number[] = [];
  for (let i = 0; i < repeat; i++) {
    const t = performance.now();
    await fn();
    samples.push(performance.now() - t);
  }
  console.log(`  ${label.padEnd(44)} median ${median(samples).toFixed(2)} ms (${repeat} runs)`);
}

export async function benchCatalog(quick = false): Promise<void> {
  const records = Number(process.env.BENCH_RECORDS ?? (quick ? 1000 : 10_000));
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-bench-catalog-'));
  const file = path.join(dir, 'catalog.sqlite');
  try {
    await benchBackend('SQLite', file, records, async () => {
      const bytes = async (name: string) => (await fs.stat(name).catch(() => ({ size: 0 }))).size;
      return (await bytes(file)) + (await bytes(`${file}-wal`));
    });
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }

  const configured = process.env.BENCH_CATALOG_URL;
  const server = configured ? null : await startPostgres();
  if (server && 'skipped' in server) {
    console.log(`catalog on PostgreSQL: left out (${server.skipped})`);
    return;
  }
  try {
    const url = configured ?? (await server!.createDatabase('bench'));
    await benchBackend('PostgreSQL', url, records, async (catalog) => {
      const rows = await catalog.sql.all<{ bytes: number }>('SELECT pg_database_size(current_database()) AS bytes');
      return Number(rows[0]?.bytes ?? 0);
    });
  } finally {
    await server?.stop();
  }
}

async function benchBackend(
  backend: string,
  location: string,
  records: number,
  storedBytes: (catalog: Catalog) => Promise<number>,
): Promise<void> {
  const catalog = await Catalog.open(location);
  try {
    await fillAndQuery(catalog, backend, records, storedBytes);
  } finally {
    await catalog.close();
  }
}

async function fillAndQuery(
  catalog: Catalog,
  backend: string,
  records: number,
  storedBytes: (catalog: Catalog) => Promise<number>,
): Promise<void> {
  const patch = `diff --git a/train.py b/train.py\n${'+x = 1\n'.repeat(200)}`;
  // Patches are kept once by their sha256, outside the rows that name them (catalog blobs).
  const patchSha256 = crypto.createHash('sha256').update(patch).digest('hex');
  await catalog.putBlob(patchSha256, patch);
  const tags = new Map<string, TagState>();
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const fill = performance.now();
  for (let i = 0; i < records; i++) {
    const tag = `bench-${i % TAGS}`;
    const id = `exp-${tag}-${String(i).padStart(6, '0')}`;
    const request = parseExperimentRequest({
      tag,
      hypothesis: `idea ${i}`,
      category: CATEGORIES[i % CATEGORIES.length],
      repo: '/repo',
      commit: (i.toString(16) + 'a'.repeat(40)).slice(0, 40),
      command: ['python3', 'train.py'],
    });
    const at = new Date(Date.UTC(2026, 0, 1) + i * 60_000).toISOString();
    await catalog.apply({
      experimentId: id,
      request,
      submittedAt: at,
      status: 'submitted',
      events: [{ status: 'submitted', at }],
    });
    await catalog.apply({
      experimentId: id,
      validation: {
        resolvedConfig: { lr: random() },
        interpreter: 'python3',
        patch: { sha256: patchSha256, bytes: patch.length, files: ['train.py'] },
      },
    });
    const failed = random() < 0.1;
    const metric = failed ? null : 1 + random();
    const state = tags.get(tag) ?? newTagState(tag);
    const next = applyOutcome(state, {
      experimentId: id,
      status: failed ? 'command_failed' : 'completed',
      metric,
      acceleratorClass: 'h100',
      commit: request.commit,
    });
    tags.set(tag, next.state);
    await catalog.apply({
      experimentId: id,
      status: failed ? 'command_failed' : 'completed',
      events: [{ status: failed ? 'command_failed' : 'completed', at }],
      training: {
        phase: 'training',
        supervisorKilled: false,
        oomKills: null,
        peakMemoryBytes: null,
        timings: NO_TIMINGS,
        exitCode: failed ? 1 : 0,
        signal: null,
        timedOut: false,
        canceled: false,
        metrics: metric === null ? null : { val_bpb: metric, peak_vram_mb: 40_000 },
        logTail: 'step 1/1',
        logPath: '/log',
        startedAt: at,
        endedAt: at,
        artifacts: [],
        heartbeats: { count: 1, firstAt: at, lastAt: at, intervalSeconds: 2 },
      },
      decision: next.decision,
      reason: failed ? 'training exited with exit code 1' : 'ok',
    });
  }
  const fillSeconds = (performance.now() - fill) / 1000;
  const size = await storedBytes(catalog);
  console.log(
    `catalog on ${backend}: ${records} records in ${TAGS} tags written in ${fillSeconds.toFixed(1)} s (${((fillSeconds * 1000) / records).toFixed(2)} ms per record, 3 writes each); ${(size / 1024 / 1024).toFixed(1)} MiB`,
  );
  const tag = 'bench-7';
  await time('history --tag T --limit 50', 50, () => catalog.list({ tag, limit: 50 }));
  await time('history (all tags) --limit 50', 50, () => catalog.list({ limit: 50 }));
  await time(`report summary --tag T (${records / TAGS} runs)`, 20, async () =>
    summarize(tag, await catalog.list({ tag })),
  );
  await time(`suggest --tag T (${records / TAGS} runs)`, 20, async () =>
    suggest(resultRuns(await catalog.list({ tag, order: 'oldest' })).map(toRunSummary), CATEGORIES, 'minimize'),
  );
  await time('report tags', 20, () => catalog.tags());
  await time('show ID (whole record)', 50, () => catalog.get(`exp-${tag}-000007`));
}
