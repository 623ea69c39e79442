import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import { execa } from 'execa';
import { submitExperiment } from '../client/experiments.js';
import type { Category } from '../domain/request.js';
import type { ExperimentResult } from '../domain/experiment.js';
import { formatTable } from './output.js';

const EXAMPLE = fileURLToPath(new URL('../../examples/ngram/', import.meta.url));

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

async function git(repo: string, ...args: string[]): Promise<string> {
  return (
    await execa('git', ['-C', repo, '-c', 'user.name=expctl demo', '-c', 'user.email=demo@expctl.invalid', ...args])
  ).stdout.trim();
}

/**
 * What `npm start` runs once the stack is up: the agent loop, played by expctl itself — edit,
 * commit, `run`, then keep the commit or `git reset` as the decision says — and the leaderboard.
 */
export async function runDemo(client: Client, options: { home: string; signal?: AbortSignal }): Promise<void> {
  const tag = `demo-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}`;
  const repo = path.join(options.home, 'demo', tag);
  await fs.mkdir(repo, { recursive: true });
  await fs.copyFile(path.join(EXAMPLE, 'train.py'), path.join(repo, 'train.py'));
  await fs.writeFile(path.join(repo, 'config.json'), '{}\n');
  await git(repo, 'init', '-q');
  await git(repo, 'add', '-A');
  await git(repo, 'commit', '-qm', 'baseline');
  const earlier = await client.workflow.count(`ExpctlTag STARTS_WITH 'demo-'`).catch(() => ({ count: 0 }));
  console.log(`Example campaign ${tag}: ${IDEAS.length} experiments of examples/ngram/train.py in ${repo}`);
  console.log(`(${earlier.count} experiments of earlier campaigns are in the Temporal history.)\n`);

  const rows: (string | number | null)[][] = [];
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
      repo,
      commit,
      timeBudgetSeconds: 60,
    });
    const result: ExperimentResult = await handle.result();
    if (result.action === 'git_reset' || result.decision === null) await git(repo, 'reset', '-q', '--hard', 'HEAD~1');
    console.log(
      `  ${experimentId}  ${result.status.padEnd(14)} ${(result.decision ?? '-').padEnd(7)} ${result.metric?.toFixed(6) ?? '   -    '}  ${idea.hypothesis}${result.near_miss ? '  (near miss)' : ''}`,
    );
    rows.push([
      commit.slice(0, 7),
      result.metric === null ? null : result.metric.toFixed(6),
      result.status === 'completed' ? result.decision : 'crash',
      idea.hypothesis,
    ]);
  }
  if (options.signal?.aborted) return;
  const ranked = rows.filter((r) => r[1] !== null).sort((a, b) => Number(a[1]) - Number(b[1]));
  console.log(`\nLeaderboard for ${tag} (val_bpb, lower is better):`);
  console.log(
    formatTable(['commit', 'val_bpb', 'status', 'description'], [...ranked, ...rows.filter((r) => r[1] === null)]),
  );
  console.log(
    `\nTry: expctl show <id>, expctl logs <id>, expctl tag show ${tag}, expctl pool — or open the Web UI and filter by ExpctlTag = '${tag}'.`,
  );
}
