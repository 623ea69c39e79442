import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { tagReportHtml } from '../../src/catalog/html.js';
import { diffRecords, summarize } from '../../src/catalog/reports.js';
import { resultsTsv } from '../../src/catalog/tsv.js';
import { submitExperiment } from '../../src/client/experiments.js';
import { parseExperimentRequest, type ExperimentRequestInput } from '../../src/domain/request.js';
import { experimentStateQuery } from '../../src/workflows/definitions.js';
import { tagWorkflowId } from '../../src/workflows/tag.js';
import { commitAll, makeRepo } from '../helpers/repo.js';
import { checkpoint } from '../helpers/records.js';
import { FIXTURES, startStack, type TestStack } from '../helpers/stack.js';
import { outputOf, type ShownJson } from '../helpers/cli.js';
import type { OutputName } from '../../src/cli/output-schemas.js';
import { waitFor } from '../helpers/wait.js';
import { attemptDocument } from '../../src/store/fence.js';

const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../../examples/ngram/train.py', import.meta.url));

let stack: TestStack;
let catalog: Catalog;
let source: { repo: string; commit: string };

function request(overrides: Partial<ExperimentRequestInput> & { tag: string }): ExperimentRequestInput {
  return {
    hypothesis: 'h',
    category: 'other',
    command: ['python3', 'train.py'],
    repo: source.repo,
    commit: source.commit,
    timeBudgetSeconds: 60,
    ...overrides,
  };
}
const run = async (input: ExperimentRequestInput) => (await submitExperiment(stack.client, input)).handle.result();
const cli = (...args: string[]) =>
  execa(process.execPath, [EXPCTL, ...args], {
    env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace, EXPCTL_CATALOG: stack.catalogPath },
    reject: false,
  });

/** The CLI as a person at a terminal runs it: text, not JSON. */
const onTerminal = (...args: string[]) =>
  execa(process.execPath, ['--import', 'data:text/javascript,process.stdout.isTTY=true', EXPCTL, ...args], {
    env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace, EXPCTL_CATALOG: stack.catalogPath },
    reject: false,
  });

beforeAll(async () => {
  stack = await startStack({ name: 'catalog', host: 'rechost', cpuSlots: 2 });
  // A second writer beside the orchestrator's: some tests seed records straight into the file.
  catalog = await Catalog.open(stack.catalogPath);
  source = await makeRepo();
});
afterAll(async () => {
  await catalog?.close();
  await stack?.stop();
});

describe('the operating record', () => {
  it('has request, commit, patch, environment and placement while the run is still training', async () => {
    const { handle, experimentId } = await submitExperiment(
      stack.client,
      request({ tag: 'live', env: { MODE: 'slow' } }),
    );
    // The record, not just the live state, must already say running (it is written as the run advances).
    await waitFor(async () => (await catalog.get(experimentId))?.status === 'running', 30_000);
    const record = (await catalog.get(experimentId))!;
    expect(record).toMatchObject({
      status: 'running',
      tag: 'live',
      commit: source.commit,
      command: ['python3', 'train.py'],
      gpu: expect.stringMatching(/^rechost\/cpu\d$/),
    });
    // The patch is kept whole by its sha256, outside the row.
    expect(record.patch).toBeNull();
    const patch = await catalog.blobPage(record.patchSha256!, 0, 1 << 20);
    expect(patch?.text).toContain('+++ b/train.py');
    expect(record.patchBytes).toBe(patch?.bytes);
    expect(record.patchFiles).toEqual(['train.py']);
    expect(record.placement?.candidates.length).toBe(2);
    expect(record.events.map((e) => e.status)).toEqual(['submitted', 'validating', 'queued', 'running']);
    // The leased host's environment travels in the train step's heartbeat (no history events) and
    // reaches the catalog with the outcome; `show` reads it from the heartbeat meanwhile.
    await waitFor(async () => {
      const shown = outputOf('show', await cli('show', experimentId, '--json')) as ShownJson;
      return /^Python 3/.test(String(shown.record?.environment?.software?.python3 ?? ''));
    }, 30_000);
    await handle.cancel();
    await handle.result();
    const ended = (await catalog.get(experimentId))!;
    expect(ended.status).toBe('canceled');
    expect(ended.environment?.software.python3).toMatch(/^Python 3/);
  });
});

describe('reports of a fixture campaign (keep, discard, crash, refused)', () => {
  beforeAll(async () => {
    await run(request({ tag: 'tsv', description: 'baseline', env: { VAL_BPB: '1.5' } }));
    await run(request({ tag: 'tsv', description: 'worse', env: { VAL_BPB: '1.6' } }));
    await run(request({ tag: 'tsv', description: 'crashes', env: { MODE: 'fail' } }));
    await run(request({ tag: 'tsv', description: 'better', env: { VAL_BPB: '1.4' } }));
    await run(request({ tag: 'tsv', description: 'refused', command: ['python3', 'missing.py'] }));
  });

  it('report tsv equals the hand-written results.tsv', async () => {
    const expected = await fs.readFile(path.join(FIXTURES, 'expected', 'results.tsv'), 'utf8');
    expect(resultsTsv(await catalog.list({ tag: 'tsv' }))).toBe(expected);
    const printed = await cli('report', 'tsv', '--tag', 'tsv');
    expect(printed.stdout + '\n').toBe(expected);

    const summary = summarize('tsv', await catalog.list({ tag: 'tsv' }));
    expect(summary).toMatchObject({
      runs: 4,
      kept: 2,
      discarded: 1,
      crashed: 1,
      refused: 1,
      keepRate: 0.5,
      crashRate: 0.25,
    });
    expect(summary.progression.map((p) => p.metric)).toEqual([1.5, 1.4]);
    const tags = JSON.parse((await cli('report', 'tags', '--json')).stdout) as { tag: string }[];
    expect(tags.find((t) => t.tag === 'tsv')).toMatchObject({
      runs: 4,
      kept: 2,
      discarded: 1,
      crashed: 1,
      refused: 1,
      keep_rate: 0.5,
      crash_rate: 0.25,
      best: 1.4,
    });
    const best = JSON.parse((await cli('best', '--tag', 'tsv', '--json')).stdout);
    expect(best).toMatchObject({ metric: 1.4, description: 'better', by_class: { cpu: { metric: 1.4 } } });
    const columns = await cli('report', 'tsv', '--tag', 'tsv', '--columns', 'commit,val_bpb,num_steps,status');
    expect(columns.stdout.split('\n').slice(0, 2)).toEqual([
      'commit\tval_bpb\tnum_steps\tstatus',
      `${source.commit.slice(0, 7)}\t1.500000\t${(await catalog.list({ tag: 'tsv', order: 'oldest' }))[0]!.metrics!.num_steps}\tkeep`,
    ]);
    const refused = await cli('tag', 'create', 'tsv', '--near-miss', 'abc');
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toContain('--near-miss "abc": expected a decimal number');
    const [first, worse] = await catalog.list({ tag: 'tsv', order: 'oldest' });
    const diff = diffRecords((await catalog.get(first!.id))!, (await catalog.get(worse!.id))!);
    expect(diff.metric.delta).toBeCloseTo(0.1, 9);
  });

  it('reads the same from a host without the catalog file: through the orchestrator, page by page', async () => {
    const elsewhere = path.join(stack.workDir, 'no-catalog-here', 'catalog.sqlite');
    const remote = (...args: string[]) =>
      execa(process.execPath, [EXPCTL, ...args], {
        env: { TEMPORAL_ADDRESS: stack.address, TEMPORAL_NAMESPACE: stack.namespace, EXPCTL_CATALOG: elsewhere },
        reject: false,
      });
    // More rows than one page carries (seeded straight into the record: only their paging matters here).
    for (let i = 0; i < 450; i++)
      await catalog.apply({
        experimentId: `exp-paged-${String(i).padStart(4, '0')}`,
        request: parseExperimentRequest(request({ tag: 'paged', hypothesis: `idea ${i}` })),
        submittedAt: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
        status: 'validation_failed',
        reason: 'seeded',
      });
    const reads = [
      ['report', 'tsv', '--tag', 'tsv'],
      ['report', 'summary', '--tag', 'tsv', '--json'],
      ['report', 'tags', '--json'],
      ['history', '--tag', 'tsv', '--json'],
      ['history', '--tag', 'paged', '--limit', '450', '--json'],
      ['best', '--tag', 'tsv', '--json'],
      ['near-misses', '--tag', 'tsv', '--json'],
      ['suggest', '--tag', 'tsv', '--json'],
      ['strategy', '--tag', 'tsv', '--json'],
    ];
    for (const args of reads) {
      const [here, there] = [await cli(...args), await remote(...args)];
      expect(there.stderr, args.join(' ')).toBe('');
      expect(there.exitCode, args.join(' ')).toBe(0);
      expect(there.stdout, args.join(' ')).toBe(here.stdout);
    }
    expect(JSON.parse((await remote('history', '--tag', 'paged', '--limit', '450', '--json')).stdout)).toHaveLength(
      450,
    );
    const [first] = await catalog.list({ tag: 'tsv', order: 'oldest' });
    const shown = JSON.parse((await remote('show', first!.id, '--json')).stdout);
    expect(shown.record).toMatchObject({ id: first!.id, status: 'completed' });
    expect(shown.record.patch_sha256).toMatch(/^[0-9a-f]{64}$/);
    const patch = await remote('show', first!.id, '--patch');
    expect(patch.exitCode).toBe(0);
    expect(patch.stdout).toContain('+++ b/train.py');
    expect(crypto.createHash('sha256').update(`${patch.stdout}\n`).digest('hex')).toBe(shown.record.patch_sha256);
    // Nothing was read from (or made at) a file on the reading host: each read was a short workflow.
    await expect(fs.access(elsewhere)).rejects.toThrow();
    await waitFor(async () => {
      let pages = 0;
      for await (const _ of stack.client.workflow.list({
        query: 'WorkflowType = "catalogQueryWorkflow" AND WorkflowId STARTS_WITH "catalog-experiments-"',
      }))
        pages++;
      // Two `history --tag paged` reads of three pages each, besides the other reads.
      return pages >= 6;
    }, 30_000);
    const missing = await remote('report', 'diff', 'exp-nope-1', 'exp-nope-2');
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toContain('no experiment exp-nope-1 in the catalog (through the orchestrator)');
  });

  it('every --json output is one JSON value in snake_case, as its schema says', async () => {
    const [first] = await catalog.list({ tag: 'tsv', order: 'oldest' });
    const printed = await execa(
      process.execPath,
      [
        EXPCTL,
        'run',
        '--tag',
        'tsv-style',
        '--hypothesis',
        'h',
        '--category',
        'other',
        '--env',
        'VAL_BPB=1.25',
        '--',
        'python3',
        'train.py',
      ],
      {
        env: {
          TEMPORAL_ADDRESS: stack.address,
          TEMPORAL_NAMESPACE: stack.namespace,
          EXPCTL_CATALOG: stack.catalogPath,
        },
        cwd: source.repo,
        reject: false,
      },
    ).then((r) => (r.exitCode === 0 ? r : Promise.reject(new Error(`${r.stdout}\n${r.stderr}`))));
    expect(outputOf('run', printed)).toMatchObject({ status: 'completed', metric: 1.25 });
    // (tag show, pool and health read the workflows; the rest the catalog.)
    const reads: [OutputName, string[]][] = [
      ['show', ['show', first!.id, '--json']],
      ['history', ['history', '--tag', 'tsv', '--json']],
      ['near-misses', ['near-misses', '--tag', 'tsv', '--json']],
      ['best', ['best', '--tag', 'tsv', '--json']],
      ['tag-show', ['tag', 'show', 'tsv', '--json']],
      ['report-summary', ['report', 'summary', '--tag', 'tsv', '--json']],
      ['report-tags', ['report', 'tags', '--json']],
      ['strategy', ['strategy', '--tag', 'tsv', '--json']],
      ['suggest', ['suggest', '--tag', 'tsv', '--k', '2', '--json']],
      ['pool', ['pool', '--json']],
      ['health', ['health', '--json']],
    ];
    for (const [name, args] of reads) {
      const result = await cli(...args);
      expect(result.exitCode, `${args.join(' ')}: ${result.stderr}`).toBe(0);
      outputOf(name, result);
    }
    const shown = outputOf('show', await cli('show', first!.id, '--json')) as ShownJson;
    expect(shown).toMatchObject({ experiment_id: first!.id, metric_policy: { name: 'val_bpb' } });
    expect(shown.record).toMatchObject({ metric_name: 'val_bpb', near_miss: false, submitted_at: expect.any(String) });
    const tagShown = outputOf('tag-show', await cli('tag', 'show', 'tsv', '--json'));
    expect(tagShown).toMatchObject({ consecutive_crashes: 0, policy: { metric_name: 'val_bpb' } });
    // `schema NAME` prints the JSON Schema the outputs were checked against.
    const schema = JSON.parse((await cli('schema', 'pool-drain')).stdout);
    expect(schema.properties.leased.items.properties).toHaveProperty('experiment_id');
    const unknown = await cli('schema', 'nope');
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain('no output named "nope"');
  });

  it('report diff A B compares two runs through the CLI: metric, every value, config and code', async () => {
    const configured = await makeRepo({ 'config.json': '{"order": 2, "model": {"width": 8}}\n' });
    const base = { tag: 'diff', configPath: 'config.json', repo: configured.repo };
    const a = await run(request({ ...base, commit: configured.commit, env: { VAL_BPB: '1.5' } }));
    await fs.writeFile(path.join(configured.repo, 'config.json'), '{"order": 4, "model": {"width": 8}}\n');
    const changed = await commitAll(configured.repo, 'order 4');
    const b = await run(request({ ...base, commit: changed, env: { VAL_BPB: '1.4018' } }));
    const printed = await cli('report', 'diff', a.experiment_id!, b.experiment_id!, '--json');
    expect(printed.exitCode, printed.stderr).toBe(0);
    const diff = outputOf('report-diff', printed);
    expect(diff).toMatchObject({
      a: a.experiment_id,
      b: b.experiment_id,
      metric_name: 'val_bpb',
      // 1.4018 - 1.5 is -0.09819999999999984 in floating point: rounded as the metric is.
      metric: { a: 1.5, b: 1.4018, delta: -0.0982 },
      config: [{ key: 'order', a: 2, b: 4 }],
      commits: { a: configured.commit, b: changed },
    });
    expect(diff.metrics).toContainEqual({ key: 'val_bpb', a: 1.5, b: 1.4018, delta: -0.0982 });
    expect(diff.code).toContain('-{"order": 2, "model": {"width": 8}}');
    expect(diff.code).toContain('+{"order": 4, "model": {"width": 8}}');
    const text = await onTerminal('report', 'diff', a.experiment_id!, b.experiment_id!);
    expect(text.stdout).toContain('val_bpb: 1.500000 -> 1.401800 (delta -0.098200)');
    expect(text.stdout).toMatch(/order\s+2\s+4/);
    const usage = await cli('report', 'diff', a.experiment_id!);
    expect(usage.exitCode).toBe(1);
    expect(usage.stderr).toContain('usage: expctl report diff A B');
  });

  // test/global-setup.ts provides Chromium (scripts/install-chromium); where it cannot, this is skipped.
  const browser = inject('chromium');
  const skipped = browser ? '' : ' [SKIPPED: no Chromium; install it with scripts/install-chromium as root]';
  it.skipIf(!browser)(
    `renders the HTML report in a real headless browser: staircase of keeps, dots for the rest${skipped}`,
    async () => {
      const file = path.join(stack.workDir, 'report.html');
      await fs.writeFile(file, tagReportHtml('tsv', await catalog.list({ tag: 'tsv' })));
      const { stdout: dom } = await execa(
        browser,
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--no-first-run',
          `--user-data-dir=${path.join(stack.workDir, 'chromium')}`,
          '--dump-dom',
          `file://${file}`,
        ],
        { timeout: 60_000 },
      );
      expect(dom).toContain('data-rendered="4"');
      expect(dom.match(/<circle [^>]*class="(keep|discard|crash)"/g)).toHaveLength(4); // one dot per run (legend dots are marked)
      expect(dom.match(/class="keep"/g)).toHaveLength(2);
      expect(dom.match(/class="crash"/g)).toHaveLength(1);
      expect(dom).toMatch(/<path id="staircase" d="M[\d.]+,[\d.]+ H[\d.]+ V[\d.]+ H[\d.]+"/);
      // The baseline (1.5) is near the one improvement: on the axis, marked; every run is listed.
      expect(dom).toMatch(/<line id="baseline" [^>]*data-clipped="false"/);
      expect(dom).toContain('baseline 1.500000</text>');
      expect(dom).toContain('data-left-out="0">all 3 runs with a metric');
    },
  );

  it.skipIf(!browser)(
    `draws a long campaign's improvements across the chart, the far baseline clipped and marked${skipped}`,
    async () => {
      // The recorded runs of tag tsv, replayed as a long campaign: a far baseline (3.47), four
      // improvements down to 2.04 and 21 discards, as an agent's tag looks after an hour.
      const [template] = await catalog.list({ tag: 'tsv', order: 'oldest' });
      const campaign = [3.47, 2.4, 2.3, 2.2, 2.04, ...Array.from({ length: 21 }, (_, i) => 2.45 + i * 0.01)].map(
        (metric, i) => ({
          ...template!,
          id: `exp-long-${i}`,
          tag: 'long',
          metric,
          decision: i < 5 ? ('keep' as const) : ('discard' as const),
        }),
      );
      const file = path.join(stack.workDir, 'long.html');
      await fs.writeFile(file, tagReportHtml('long', campaign));
      const { stdout: dom } = await execa(
        browser,
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-background-networking',
          '--disable-component-update',
          '--no-first-run',
          `--user-data-dir=${path.join(stack.workDir, 'chromium-long')}`,
          '--dump-dom',
          `file://${file}`,
        ],
        { timeout: 60_000 },
      );
      expect(dom).toContain('data-rendered="26"');
      expect(dom).toMatch(/<line id="baseline" [^>]*data-clipped="true"/);
      expect(dom).toContain('baseline 3.470000 (off the axis, which shows the improvements)');
      const keeps = [...dom.matchAll(/<circle cx="[\d.]+" cy="([\d.]+)" r="5" class="keep"/g)].map((m) => Number(m[1]));
      expect(keeps).toHaveLength(5);
      // The plot area is 264 px high (360 less two 48 px margins): the four improvements span most of it.
      const improvements = keeps.slice(1);
      expect(Math.max(...improvements) - Math.min(...improvements)).toBeGreaterThan(264 / 2);
      expect(dom).toMatch(/<circle cx="[\d.]+" cy="48" r="5" class="keep" data-clipped="true"/);
      expect(dom).toContain('data-shown="20" data-left-out="6">the best 20 of 26 runs with a metric; 6 more not shown');
    },
  );
});

describe('what the record keeps and what it does not', () => {
  it('keeps secrets out of every record and log tail it stores', async () => {
    process.env.EXPCTL_TEST_SECRET_TOKEN = 'worker-secret-7f3a9c';
    const id = (
      await submitExperiment(
        stack.client,
        request({
          tag: 'secrets',
          env: { VAL_BPB: '1.0', HF_TOKEN: 'hf_request_secret_42', PRINT_SECRETS: 'HF_TOKEN,EXPCTL_TEST_SECRET_TOKEN' },
        }),
      )
    ).experimentId;
    await stack.client.workflow.getHandle(id).result();
    const record = (await catalog.get(id))!;
    expect(record.environment?.variables.EXPCTL_TEST_SECRET_TOKEN).toBe('[redacted]');
    expect(record.environment?.variables.HF_TOKEN).toBe('[redacted]');
    expect(record.request.env.HF_TOKEN).toBe('[redacted]');
    expect(record.logTail).toContain('HF_TOKEN=[redacted]');
    expect(record.logTail).toContain('EXPCTL_TEST_SECRET_TOKEN=[redacted]');
    checkpoint(stack.catalogPath);
    for (const file of [stack.catalogPath, `${stack.catalogPath}-wal`]) {
      const bytes = await fs.readFile(file).catch(() => Buffer.alloc(0));
      expect(bytes.includes('hf_request_secret_42')).toBe(false);
      expect(bytes.includes('worker-secret-7f3a9c')).toBe(false);
    }
    delete process.env.EXPCTL_TEST_SECRET_TOKEN;
  });

  it('records artifacts with sha256 and a manifest that names the experiment', async () => {
    const { handle, experimentId } = await submitExperiment(
      stack.client,
      request({ tag: 'artifacts', env: { VAL_BPB: '1.0' } }),
    );
    await handle.result();
    const record = (await catalog.get(experimentId))!;
    const sha256 = crypto.createHash('sha256').update('weights\n').digest('hex');
    // Kept in the fleet store too: the record names the object, and the store gives its bytes back.
    expect(record.artifacts).toEqual([{ path: 'model.txt', bytes: 8, sha256, uri: stack.store.objectUri(sha256) }]);
    expect((await stack.store.getBytes(sha256)).toString()).toBe('weights\n');
    expect(await stack.store.getDocument(attemptDocument(experimentId, 1, 'artifacts'))).toMatchObject({
      experimentId,
      attempt: 1,
      artifacts: record.artifacts,
    });
    const manifest = JSON.parse(
      await fs.readFile(
        path.join(stack.workDir, 'rechost', 'runs', experimentId, 'artifacts', 'expctl-manifest.json'),
        'utf8',
      ),
    );
    expect(manifest).toMatchObject({
      experimentId,
      commit: source.commit,
      tag: 'artifacts',
      artifacts: [{ path: 'model.txt', bytes: 8, sha256 }],
    });
    expect(record.heartbeats?.count).toBeGreaterThanOrEqual(1);
    expect(Date.parse(record.heartbeats!.lastAt!)).toBeGreaterThanOrEqual(Date.parse(record.heartbeats!.firstAt!));
  });
});

describe('operator actions and guidance', () => {
  it('rerun of a discarded experiment runs the same code and config and reproduces its metric', async () => {
    const ngram = await makeRepo({ 'config.json': '{"order": 2}\n' }, EXAMPLE);
    const base = {
      tag: 'rerun',
      command: ['python3', 'train.py', '--config', 'config.json'],
      configPath: 'config.json',
      repo: ngram.repo,
    };
    const kept = await run(request({ ...base, commit: ngram.commit }));
    expect(kept.decision).toBe('keep');
    await fs.writeFile(path.join(ngram.repo, 'config.json'), '{"order": 4}\n');
    const worseCommit = await commitAll(ngram.repo, 'order 4');
    const discarded = await run(request({ ...base, commit: worseCommit, hypothesis: 'longer context' }));
    expect(discarded.decision).toBe('discard');
    await execa('git', ['-C', ngram.repo, 'reset', '-q', '--hard', 'HEAD~1']); // what the agent does

    const rerun = await cli('rerun', discarded.experiment_id!, '--json');
    expect(rerun.exitCode).toBe(0);
    // One JSON value: the new run's result, and what it repeated.
    const result = JSON.parse(rerun.stdout);
    expect(result).toMatchObject({ rerun_of: discarded.experiment_id, commit: worseCommit, config: 'config.json' });
    expect(result.metric).toBe(discarded.metric);
    // Compared, not claimed: the same host, software, lockfiles and class as the original.
    expect(result.environment).toEqual({ checked: true, differences: [] });
    const record = (await catalog.get(result.experiment_id))!;
    expect(record).toMatchObject({
      originKind: 'rerun',
      originId: discarded.experiment_id,
      commit: worseCommit,
      resolvedConfig: { order: 4 },
    });
  });

  it("rerun names what differs from the original's recorded environment", async () => {
    // The original, as the record keeps it after Temporal's retention dropped its workflow: trained
    // by a worker with another Python and a uv.lock this commit no longer has; otherwise the
    // environment and placement of a run of this stack (tag tsv's first).
    const [model] = await catalog.list({ tag: 'tsv', order: 'oldest' });
    const { environment, placement } = (await catalog.get(model!.id))!;
    const id = 'exp-rerun-older-worker';
    await catalog.apply({
      experimentId: id,
      request: parseExperimentRequest(request({ tag: 'rerun-env', env: { VAL_BPB: '1.2' } })),
      submittedAt: new Date(Date.UTC(2026, 0, 2)).toISOString(),
      status: 'completed',
      reason: 'training finished; val_bpb = 1.2',
      environment: {
        ...environment!,
        software: { ...environment!.software, python3: 'Python 3.8.10' },
        lockfiles: { ...environment!.lockfiles, 'uv.lock': 'a'.repeat(64) },
      },
      placement: placement!,
    });
    const rerun = await cli('rerun', id, '--json');
    expect(rerun.exitCode, rerun.stderr).toBe(0);
    // One JSON value: the rerun's result, what it repeated, and how its environment compares.
    const result = JSON.parse(rerun.stdout);
    expect(result.changed).toContain('the environment is compared with the original once the rerun has trained');
    expect(result).toMatchObject({ status: 'completed', metric: 1.2 });
    expect(result.environment).toEqual({
      checked: true,
      differences: [
        { what: 'software python3', original: 'Python 3.8.10', rerun: environment!.software.python3 },
        { what: 'lockfile uv.lock', original: 'a'.repeat(64), rerun: environment!.lockfiles['uv.lock'] ?? null },
      ],
    });
    // Detached, nothing is compared, and the output says so rather than "none".
    const detached = await cli('rerun', id, '--detach', '--json');
    expect(detached.exitCode, detached.stderr).toBe(0);
    const submitted = JSON.parse(detached.stdout);
    expect(submitted.environment).toEqual({
      checked: false,
      reason: '--detach: the rerun had not trained when this command ended',
      differences: [],
    });
    expect(submitted.changed).toContain('the environment is not compared (--detach)');
    await stack.client.workflow.getHandle(submitted.experiment_id).result();
  });

  it('tag stop cancels the queued and running experiments of a tag and says which', async () => {
    const slow = await Promise.all(
      [0, 1, 2].map(() => submitExperiment(stack.client, request({ tag: 'stopme', env: { MODE: 'slow' } }))),
    );
    await waitFor(
      async () =>
        (await Promise.all(slow.map((s) => s.handle.query(experimentStateQuery)))).every(
          (s) => s.status === 'running' || s.status === 'queued',
        ),
      30_000,
    );
    // `tag stop` finds them through visibility, which is eventually consistent: wait until it lists all three.
    await waitFor(
      async () =>
        (
          await stack.client.workflow.count(
            `WorkflowType = 'experimentWorkflow' AND ExpctlTag = 'stopme' AND ExecutionStatus = 'Running'`,
          )
        ).count === 3,
      30_000,
    );
    const stopped = await cli('tag', 'stop', 'stopme', '--json');
    expect(stopped.exitCode).toBe(0);
    expect(JSON.parse(stopped.stdout).canceled.sort()).toEqual(slow.map((s) => s.experimentId).sort());
    const results = await Promise.all(slow.map((s) => s.handle.result()));
    expect(results.map((r) => r.status)).toEqual(['canceled', 'canceled', 'canceled']);
  });

  it('pool drain and undrain say which slots changed, which already were so, and which runs hold leases', async () => {
    const slow = await submitExperiment(stack.client, request({ tag: 'drain-report', env: { MODE: 'slow' } }));
    await waitFor(async () => (await slow.handle.query(experimentStateQuery)).status === 'running', 60_000);
    const { gpu } = await slow.handle.query(experimentStateQuery);
    const other = ['rechost/cpu0', 'rechost/cpu1'].find((slot) => slot !== gpu)!;
    try {
      const one = await cli('pool', 'drain', other, '--reason', 'fan', '--json');
      expect(one.exitCode, one.stderr).toBe(0);
      expect(outputOf('pool-drain', one)).toEqual({
        target: other,
        drained: true,
        changed: [other],
        unchanged: [],
        leased: [],
      });
      const host = await cli('pool', 'drain', 'rechost', '--json');
      expect(outputOf('pool-drain', host)).toEqual({
        target: 'rechost',
        drained: true,
        changed: [gpu],
        unchanged: [other],
        leased: [{ slot_id: gpu, experiment_id: slow.experimentId }],
      });
      // As text: the same facts, for an operator at a terminal.
      const again = await onTerminal('pool', 'drain', 'rechost');
      expect(again.exitCode).toBe(0);
      expect(again.stdout.split('\n')).toEqual([
        'nothing changed on rechost',
        `already drained: ${['rechost/cpu0', 'rechost/cpu1'].join(', ')}`,
        `still leased: ${gpu} runs ${slow.experimentId} (it finishes; no new lease there)`,
      ]);
      const undrained = await onTerminal('pool', 'undrain', other);
      expect(undrained.stdout).toBe(`undrained ${other}`);
      const pool = outputOf('pool', await cli('pool', '--json')) as {
        slots: { slot: { slot_id: string }; draining: boolean }[];
      };
      expect(pool.slots.map((entry) => [entry.slot.slot_id, entry.draining]).sort()).toEqual(
        [
          [gpu, true],
          [other, false],
        ].sort(),
      );
    } finally {
      await slow.handle.cancel();
      await slow.handle.result();
      expect((await cli('pool', 'undrain', 'rechost')).exitCode).toBe(0);
    }
    const rest = outputOf('pool-undrain', await cli('pool', 'undrain', 'rechost', '--json'));
    expect(rest).toMatchObject({ drained: false, changed: [], leased: [] });
    expect(rest.unchanged).toHaveLength(2);
  });

  it('adapts the strategy after every completion and suggests what to try', async () => {
    for (let i = 0; i < 3; i++) await run(request({ tag: 'strategy', category: 'optimizer', env: { MODE: 'fail' } }));
    expect(await catalog.strategy('strategy')).toMatchObject({
      mode: 'exploit',
      manual: false,
      reason: expect.stringMatching(/3 of the last 3 runs crashed/),
    });
    const set = await cli(
      'strategy',
      '--tag',
      'strategy',
      '--set',
      'ablation',
      '--reason',
      'operator wants to learn what matters',
      '--json',
    );
    expect(JSON.parse(set.stdout)).toMatchObject({ mode: 'ablation', manual: true });
    // The change went through the tag's workflow, signed and checked (the CLI writes nothing itself).
    expect(await catalog.auditTrail(tagWorkflowId('strategy'))).toContainEqual(
      expect.objectContaining({ action: 'configure_tag', allowed: true }),
    );
    const unknown = await cli('strategy', '--tag', 'never-seen', '--set', 'explore', '--reason', 'r');
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toContain('no tag never-seen');
    const malformed = await cli('strategy', '--tag', 'strategy', '--set', 'ablation');
    expect(malformed.stderr).toContain('--set needs --reason TEXT');
    await run(request({ tag: 'strategy', category: 'hyperparams', env: { VAL_BPB: '1.0' } }));
    expect((await catalog.strategy('strategy'))?.mode).toBe('ablation');
    const suggestion = JSON.parse((await cli('suggest', '--tag', 'strategy', '--json')).stdout);
    expect(suggestion.mode).toBe('ablation');
    expect(suggestion.categories.find((c: { category: string }) => c.category === 'optimizer')).toMatchObject({
      runs: 3,
      crashes: 3,
      kept: 0,
    });
    // Only the categories the tag used, unless asked for all of them.
    expect(suggestion.categories.map((c: { category: string }) => c.category)).toEqual(['optimizer', 'hyperparams']);
    expect(suggestion.under_explored).not.toContain('architecture');
    const everything = JSON.parse((await cli('suggest', '--tag', 'strategy', '--all-categories', '--json')).stdout);
    expect(everything.under_explored).toContain('architecture');
    expect(suggestion.variants).toBeUndefined();
    // --k: diverse next variants for a batch, the tag's mode's kind of idea first; only of the
    // categories the tag used (here one idea: hyperparams, tried once), unless asked for all.
    const used = JSON.parse((await cli('suggest', '--tag', 'strategy', '--k', '3', '--json')).stdout);
    expect(used.variants.map((v: { category: string }) => v.category)).toEqual(['hyperparams']);
    const proposed = JSON.parse(
      (await cli('suggest', '--tag', 'strategy', '--k', '3', '--all-categories', '--json')).stdout,
    );
    expect(proposed.variants).toHaveLength(3);
    expect(new Set(proposed.variants.map((v: { category: string }) => v.category)).size).toBe(3);
    expect((await cli('suggest', '--tag', 'strategy', '--k', '0')).stderr).toContain('--k');
    const auto = JSON.parse((await cli('strategy', '--tag', 'strategy', '--set', 'auto', '--json')).stdout);
    expect(auto).toMatchObject({ manual: false, mode: (await catalog.strategy('strategy'))!.mode });
    expect(auto.reason).not.toBe('operator wants to learn what matters');
  });
});
