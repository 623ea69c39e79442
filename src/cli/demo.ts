import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { execa } from 'execa';
import type { CatalogView } from '../client/catalog.js';
import { addShard, datasetVersionOutcome } from '../client/datasets.js';
import { submitBatch } from '../client/batches.js';
import { commitVariant } from '../client/source.js';
import { countExperimentsOfTags, submitExperiment } from '../client/experiments.js';
import { startPromotion } from '../client/promotions.js';
import { tagState } from '../client/tags.js';
import { DEFAULT_TAG_POLICY, improvement } from '../domain/decision.js';
import { resultKind } from '../domain/outcome.js';
import { DEFAULT_APPROVAL_TIMEOUT_MS } from '../domain/promotion.js';
import type { Category } from '../domain/request.js';
import type { ExperimentResult } from '../domain/experiment.js';
import { formatTable } from './output.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/ngram/', import.meta.url));
/** The example's dataset and model names. */
const DATASET = 'ngram';
const MODEL = 'ngram-lm';

interface Idea {
  hypothesis: string;
  category: Category;
  config: Record<string, unknown>;
}

/** The example campaign: a baseline and variations, some kept, some discarded, one crash. */
const IDEAS: Idea[] = [
  { hypothesis: 'baseline: unigram context', category: 'other', config: {} },
  { hypothesis: 'a second-order context matches the source', category: 'architecture', config: { order: 2 } },
  { hypothesis: 'a longer context captures more structure', category: 'architecture', config: { order: 4 } },
  { hypothesis: 'ablation: no context at all', category: 'ablation', config: { order: 0 } },
  {
    hypothesis: 'less smoothing once the context is right',
    category: 'regularization',
    config: { order: 2, smoothing: 0.1 },
  },
  { hypothesis: 'more smoothing generalizes better', category: 'regularization', config: { order: 2, smoothing: 0.5 } },
];

/** The demo commits as itself: the user's git may have no identity configured. */
const DEMO_IDENTITY = { name: 'expctl demo', email: 'demo@expctl.invalid' };

async function git(repo: string, ...args: string[]): Promise<string> {
  return (
    await execa('git', [
      '-C',
      repo,
      '-c',
      `user.name=${DEMO_IDENTITY.name}`,
      '-c',
      `user.email=${DEMO_IDENTITY.email}`,
      ...args,
    ])
  ).stdout.trim();
}

/** The parallel part: four variants of the best commit so far, run at once and decided as one tournament. */
const VARIANTS: Idea[] = [
  { hypothesis: 'even less smoothing', category: 'regularization', config: { order: 2, smoothing: 0.05 } },
  {
    hypothesis: 'third-order context, light smoothing',
    category: 'architecture',
    config: { order: 3, smoothing: 0.1 },
  },
  { hypothesis: 'a learned mixture of orders', category: 'architecture', config: { model: 'mixture', order: 2 } },
  { hypothesis: 'smoothing between the two tried', category: 'regularization', config: { order: 2, smoothing: 0.2 } },
];

/** One `expctl batch` of VARIANTS on HEAD; advances the branch to the winner. Returns the winner. */
async function runDemoBatch(
  client: Client,
  tag: string,
  repo: string,
): Promise<{ winner: { experimentId: string; metric: number } | null; rows: (string | number | null)[][] }> {
  const base = await git(repo, 'rev-parse', 'HEAD');
  const variants: { commit: string; hypothesis: string }[] = [];
  for (const idea of VARIANTS) {
    const config = `${JSON.stringify(idea.config)}\n`;
    variants.push({
      commit: await commitVariant(repo, base, 'config.json', config, idea.hypothesis, DEMO_IDENTITY),
      hypothesis: idea.hypothesis,
    });
  }
  console.log(`\nA batch: ${VARIANTS.length} variants of ${base.slice(0, 7)} at once, decided as one tournament:`);
  const { handle } = await submitBatch(client, {
    template: {
      tag,
      category: 'combination',
      command: ['python3', 'train.py', '--config', 'config.json'],
      configPath: 'config.json',
      datasets: [`${DATASET}@latest`],
      repo,
      timeBudgetSeconds: 60,
    },
    base,
    variants,
  });
  const result = await handle.result();
  for (const child of result.children)
    console.log(
      `  ${child.experiment_id}  ${child.status.padEnd(14)} ${(child.decision ?? '-').padEnd(7)} ${child.metric?.toFixed(6) ?? '   -    '}  ${child.rule ?? ''}`,
    );
  console.log(`  → ${result.action} to ${result.commit.slice(0, 7)}: ${result.reason}`);
  await git(repo, 'reset', '-q', '--hard', result.commit);
  const winner = result.children.find((child) => child.experiment_id === result.winner);
  const rows = result.children.map((child, i) => [
    variants[i]!.commit.slice(0, 7),
    child.metric === null ? null : child.metric.toFixed(6),
    resultKind(child.status, child.decision),
    `${VARIANTS[i]!.hypothesis} (batch)`,
  ]);
  return { winner: winner ? { experimentId: winner.experiment_id!, metric: winner.metric! } : null, rows };
}

/**
 * A data producer's delivery: prepare.py writes the example's data as four shards, delivered out
 * of order and one of them twice; the version seals when all four are in and runs its gates.
 */
async function deliverData(client: Client, dir: string): Promise<number> {
  await execa('python3', [path.join(EXAMPLE, 'prepare.py'), dir, '--shards', '4'], { cwd: EXAMPLE });
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort();
  const deliveries = [];
  for (const index of [2, 0, 2, 3, 1]) {
    const file = path.join(dir, files[index]!);
    const declaredSha256 = (await fs.readFile(`${file}.sha256`, 'utf8')).trim();
    const added = await addShard(client, {
      dataset: DATASET,
      file,
      shardIndex: index,
      shardCount: files.length,
      declaredSha256,
    });
    deliveries.push(`${index}:${added.outcome}`);
    if (index === 1) {
      const outcome = await datasetVersionOutcome(client, DATASET, added.version);
      const gates = outcome.gates.map((g) => `${g.gate} ${g.passed ? 'passed' : `failed (${g.code})`}`).join(', ');
      console.log(
        `Data: shards delivered as ${deliveries.join(' ')} → ${DATASET}@${added.version} ${outcome.status}: ${gates}`,
      );
      return added.version;
    }
  }
  throw new Error('unreachable: shard 1 is delivered last');
}

/** The best kept run's model goes to MODEL@staging: integrity, a holdout evaluation on the fleet, the alias. */
async function promoteBest(client: Client, catalog: CatalogView, experimentId: string): Promise<void> {
  const started = await startPromotion(client, catalog, {
    experimentId,
    model: MODEL,
    alias: 'staging',
    approvalTimeoutMs: DEFAULT_APPROVAL_TIMEOUT_MS,
  });
  if ('refusal' in started) {
    console.log(`\nPromotion of ${experimentId} refused: ${started.refusal.code}: ${started.refusal.reason}`);
    return;
  }
  const result = await started.handle.result();
  console.log(
    `\nPromotion ${started.promotionId}: ${result.status} (${result.code}): ${result.reason}` +
      (result.version !== null ? ` → ${MODEL}@staging is version ${result.version}` : ''),
  );
}

/**
 * What `npm start` runs once the stack is up: a dataset version delivered shard by shard; the
 * agent loop, played by expctl itself — edit, commit, `run` on the newest passed version, then
 * keep the commit or `git reset` as the decision says; the leaderboard; and the best model
 * promoted through its gates.
 */
export async function runDemo(
  client: Client,
  options: { home: string; catalog: CatalogView; signal?: AbortSignal },
): Promise<void> {
  const tag = `demo-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}`;
  const repo = path.join(options.home, 'demo', tag);
  await fs.mkdir(repo, { recursive: true });
  await fs.copyFile(path.join(EXAMPLE, 'train.py'), path.join(repo, 'train.py'));
  await fs.writeFile(path.join(repo, 'config.json'), '{}\n');
  await git(repo, 'init', '-q');
  await git(repo, 'add', '-A');
  await git(repo, 'commit', '-qm', 'baseline');
  const earlier = await countExperimentsOfTags(client, 'demo-');
  console.log(`Example campaign ${tag}: ${IDEAS.length} experiments of examples/ngram/train.py in ${repo}`);
  console.log(`(${earlier} experiments of earlier campaigns are in the Temporal history.)\n`);
  const version = await deliverData(client, path.join(options.home, 'demo', `${tag}-data`));
  console.log(`Every run reads ${DATASET}@latest, pinned to version ${version} when it starts.\n`);

  const rows: (string | number | null)[][] = [];
  let best: { experimentId: string; metric: number } | null = null;
  for (const [i, idea] of IDEAS.entries()) {
    if (options.signal?.aborted) return; // the stack is stopping
    if (i > 0) {
      await fs.writeFile(path.join(repo, 'config.json'), `${JSON.stringify(idea.config)}\n`);
      await git(repo, 'commit', '-qam', idea.hypothesis);
    }
    const commit = await git(repo, 'rev-parse', 'HEAD');
    const { handle, experimentId } = await submitExperiment(client, {
      tag,
      hypothesis: idea.hypothesis,
      category: idea.category,
      command: ['python3', 'train.py', '--config', 'config.json'],
      configPath: 'config.json',
      datasets: [`${DATASET}@latest`],
      repo,
      commit,
      timeBudgetSeconds: 60,
    });
    const result: ExperimentResult = await handle.result();
    if (result.action === 'git_reset' || result.decision === null) await git(repo, 'reset', '-q', '--hard', 'HEAD~1');
    console.log(
      `  ${experimentId}  ${result.status.padEnd(14)} ${(result.decision ?? '-').padEnd(7)} ${result.metric?.toFixed(6) ?? '   -    '}  ${idea.hypothesis}${result.near_miss ? '  (near miss)' : ''}`,
    );
    // A keep moved the tag's best (decision.ts): the latest kept run is the best so far.
    if (result.decision === 'keep') best = { experimentId, metric: result.metric! };
    rows.push([
      commit.slice(0, 7),
      result.metric === null ? null : result.metric.toFixed(6),
      resultKind(result.status, result.decision),
      idea.hypothesis,
    ]);
  }
  if (options.signal?.aborted) return;
  const batch = await runDemoBatch(client, tag, repo);
  rows.push(...batch.rows);
  if (batch.winner) best = batch.winner; // the batch's kept child: it beat the best so far
  if (options.signal?.aborted) return;
  const policy = (await tagState(client, tag))?.policy ?? DEFAULT_TAG_POLICY;
  const ranked = rows.filter((r) => r[1] !== null).sort((a, b) => improvement(policy, Number(b[1]), Number(a[1])));
  const better = policy.direction === 'minimize' ? 'lower' : 'higher';
  console.log(`\nLeaderboard for ${tag} (${policy.metricName}, ${better} is better):`);
  console.log(
    formatTable(
      ['commit', policy.metricName, 'status', 'description'],
      [...ranked, ...rows.filter((r) => r[1] === null)],
    ),
  );
  if (best && !options.signal?.aborted) await promoteBest(client, options.catalog, best.experimentId);
  console.log(
    `\nTry: expctl show <id>, expctl logs <id>, expctl tag show ${tag}, expctl pool, expctl data versions, ` +
      `expctl models, expctl lineage ${DATASET}@${version} — or open the Web UI and filter by ExpctlTag = '${tag}'.`,
  );
}
