import fs from 'node:fs/promises';
import { execa } from 'execa';
import { REPORT_TELEMETRY_RUNS, tagReportHtml, usedByRuns } from '../../catalog/html.js';
import { bestKept, diffRecords, resultRuns, slotHoursText, summarize, toRunSummary } from '../../catalog/reports.js';
import { parseColumns, resultsTsv } from '../../catalog/tsv.js';
import { CATEGORIES } from '../../domain/request.js';
import { setTagStrategy } from '../../client/catalog.js';
import {
  proposeVariants,
  strategyChangeProblem,
  suggest,
  type Mode,
  type StrategyChange,
} from '../../domain/strategy.js';
import { connectClient } from '../../temporal/connection.js';
import { asRefusal } from '../refusal.js';
import { openCatalog } from '../catalog-view.js';
import { CliError, formatTable, printJson, wantsJson } from '../output.js';

function need<T>(value: T | undefined, what: string, source: string): T {
  if (value === undefined) throw new CliError(`no ${what} in ${source}`);
  return value;
}

const fmt = (value: number | null | undefined, digits = 6) =>
  value === null || value === undefined ? null : value.toFixed(digits);

export async function historyCommand(options: {
  tag?: string;
  status?: string;
  category?: string;
  limit?: string;
  json?: boolean;
}): Promise<void> {
  const catalog = await openCatalog();
  const limit = options.limit === undefined ? 50 : Number(options.limit);
  if (!Number.isInteger(limit) || limit < 1)
    throw new CliError(`--limit must be a whole number >= 1, got ${options.limit}`);
  const filter = { tag: options.tag, status: options.status, category: options.category };
  const rows = await catalog.experiments(filter, limit);
  if (wantsJson(options)) return printJson(rows);
  console.log(
    formatTable(
      ['experiment', 'status', 'decision', 'metric', 'delta', 'category', 'commit', 'hypothesis'],
      rows.map((r) => [
        r.id,
        r.status,
        r.decision,
        fmt(r.metric),
        fmt(r.delta),
        r.category,
        r.commit.slice(0, 7),
        r.hypothesis,
      ]),
    ),
  );
}

/** The best kept run (min or max kept metric, not the latest keep); JSON adds the best per class. */
export async function bestCommand(options: { tag: string; json?: boolean }): Promise<void> {
  const catalog = await openCatalog();
  const { overall, byClass } = bestKept(await catalog.experiments({ tag: options.tag, order: 'oldest' }));
  const best = need(overall ?? undefined, `kept run for tag ${options.tag}`, catalog.source);
  if (wantsJson(options)) return printJson({ ...best, byClass });
  console.log(`${best.id}: ${best.metricName} ${fmt(best.metric)} at commit ${best.commit} (${best.hypothesis})`);
  for (const [group, r] of Object.entries(byClass))
    console.log(`  ${group}: ${fmt(r.metric)} (${r.id}, ${r.commit.slice(0, 7)})`);
}

export async function nearMissesCommand(options: { tag: string; json?: boolean }): Promise<void> {
  const rows = await (await openCatalog()).experiments({ tag: options.tag, nearMiss: true });
  if (wantsJson(options)) return printJson(rows);
  console.log(
    formatTable(
      ['experiment', 'metric', 'delta', 'category', 'hypothesis'],
      rows.map((r) => [r.id, fmt(r.metric), fmt(r.delta), r.category, r.hypothesis]),
    ),
  );
}

export async function reportCommand(
  kind: string,
  args: string[],
  options: { tag?: string; json?: boolean; out?: string; columns?: string },
): Promise<void> {
  const catalog = await openCatalog();
  const tag = (): string => {
    if (!options.tag) throw new CliError(`report ${kind} needs --tag T`);
    return options.tag;
  };
  switch (kind) {
    case 'tsv': {
      let columns: string[];
      try {
        columns = parseColumns(options.columns);
      } catch (error) {
        throw new CliError((error as Error).message);
      }
      process.stdout.write(resultsTsv(await catalog.experiments({ tag: tag() }), columns));
      return;
    }
    case 'summary': {
      const summary = summarize(tag(), await catalog.experiments({ tag: tag() }));
      if (wantsJson(options)) return printJson(summary);
      const pct = (rate: number) => `${(rate * 100).toFixed(0)}%`;
      console.log(
        `tag ${summary.tag}: ${summary.runs} runs, ${summary.kept} kept (${pct(summary.keepRate)}), ${summary.discarded} discarded, ` +
          `${summary.crashed} crashed (${pct(summary.crashRate)}); ` +
          `not counted: ${summary.refused} refused, ${summary.infrastructure} infrastructure failures, ${summary.canceled} canceled`,
      );
      console.log(
        `best: ${summary.best ? `${fmt(summary.best.metric)} (${summary.best.id})` : '-'}; ${slotHoursText(summary)}; queue wait median ${summary.queueWaitSeconds.median?.toFixed(1) ?? '-'} s, max ${summary.queueWaitSeconds.max?.toFixed(1) ?? '-'} s`,
      );
      for (const [group, b] of Object.entries(summary.bestByClass))
        console.log(`best on ${group}: ${fmt(b.metric)} (${b.id})`);
      console.log('\nprogression of kept runs:');
      console.log(
        formatTable(
          ['experiment', 'metric', 'commit'],
          summary.progression.map((p) => [p.id, fmt(p.metric), p.commit.slice(0, 7)]),
        ),
      );
      console.log('\ncategories:');
      console.log(
        formatTable(
          ['category', 'runs', 'kept', 'keep rate'],
          summary.categories.map((c) => [c.category, c.runs, c.kept, `${(c.keepRate * 100).toFixed(0)}%`]),
        ),
      );
      return;
    }
    case 'tags': {
      const tags = await catalog.tags();
      if (wantsJson(options)) return printJson(tags);
      const pct = (rate: number) => `${(rate * 100).toFixed(0)}%`;
      const header = [
        'tag',
        'runs',
        'kept',
        'discarded',
        'crashed',
        'keep rate',
        'crash rate',
        'refused',
        'infra',
        'canceled',
        'best',
        'last',
      ];
      const rows = tags.map((t) => [
        t.tag,
        t.runs,
        t.kept,
        t.discarded,
        t.crashed,
        pct(t.keepRate),
        pct(t.crashRate),
        t.refused,
        t.infrastructure,
        t.canceled,
        fmt(t.best),
        t.lastAt,
      ]);
      console.log(formatTable(header, rows));
      return;
    }
    case 'diff': {
      const [idA, idB] = args;
      if (!idA || !idB) throw new CliError('usage: expctl report diff A B');
      const a = need(await catalog.experiment(idA), `experiment ${idA}`, catalog.source);
      const b = need(await catalog.experiment(idB), `experiment ${idB}`, catalog.source);
      const diff = diffRecords(a, b);
      // The code diff comes from git where the repository is reachable, else from the recorded patches.
      let code: string;
      try {
        code = (await execa('git', ['-C', a.repo, 'diff', a.commit, b.commit])).stdout;
      } catch {
        // Kept whole by sha256 (older runs: the text in their row).
        const patchOf = async (r: typeof a) =>
          (r.patchSha256 ? await catalog.blob(r.patchSha256) : undefined) ?? r.patch ?? '';
        const [patchA, patchB] = await Promise.all([patchOf(a), patchOf(b)]);
        code = patchA === patchB ? '' : `--- patch of ${a.id}\n${patchA}\n--- patch of ${b.id}\n${patchB}`;
      }
      if (wantsJson(options)) return printJson({ ...diff, code });
      console.log(
        `${diff.metricName}: ${fmt(diff.metric.a)} -> ${fmt(diff.metric.b)} (delta ${fmt(diff.metric.delta)})`,
      );
      console.log(
        formatTable(
          ['metric', a.id, b.id, 'delta'],
          diff.metrics.map((m) => [m.key, m.a, m.b, fmt(m.delta, 4)]),
        ),
      );
      if (diff.config.length)
        console.log(
          `\nconfig:\n${formatTable(
            ['key', 'a', 'b'],
            diff.config.map((c) => [c.key, JSON.stringify(c.a), JSON.stringify(c.b)]),
          )}`,
        );
      console.log(`\ncode (${a.commit.slice(0, 7)} -> ${b.commit.slice(0, 7)}):\n${code || '(identical)'}`);
      return;
    }
    case 'html': {
      const records = await catalog.experiments({ tag: tag() });
      const gates = [];
      for (const dataset of usedByRuns(records).datasets)
        gates.push(...(await catalog.gateStats({ dataset })).map((row) => ({ ...row, dataset })));
      // The page keeps only what this tag's runs used (extrasOfTag).
      const html = tagReportHtml(
        tag(),
        records,
        {
          versions: await catalog.datasetVersions(),
          gates,
          models: await catalog.models(),
        },
        await catalog.gpuTelemetry(tag(), REPORT_TELEMETRY_RUNS),
      );
      const out = options.out ?? `expctl-${tag()}.html`;
      await fs.writeFile(out, html);
      console.log(out);
      return;
    }
    default:
      throw new CliError(`unknown report "${kind}": summary, tsv, diff, tags or html`);
  }
}

/** `strategy --tag T [--set MODE --reason TEXT | --set auto]`: reads the mode; a change is a signed update of the tag. */
export async function strategyCommand(options: {
  tag: string;
  set?: string;
  reason?: string;
  json?: boolean;
}): Promise<void> {
  let current;
  if (options.set !== undefined) {
    const change = { mode: options.set, ...(options.reason !== undefined ? { reason: options.reason } : {}) };
    const problem = strategyChangeProblem(change);
    if (problem) throw new CliError(problem);
    const client = await connectClient();
    current = await setTagStrategy(client, options.tag, change as StrategyChange).catch((error: unknown) => {
      throw asRefusal(error);
    });
  } else {
    current = await (await openCatalog()).strategy(options.tag);
  }
  current ??= { mode: 'explore', reason: 'no completed runs yet', manual: false, updatedAt: null };
  if (wantsJson(options)) return printJson({ tag: options.tag, ...current });
  console.log(`tag ${options.tag}: ${current.mode}${current.manual ? ' (set by an operator)' : ''}: ${current.reason}`);
}

export async function suggestCommand(options: {
  tag: string;
  k?: number;
  allCategories?: boolean;
  json?: boolean;
}): Promise<void> {
  const catalog = await openCatalog();
  const records = await catalog.experiments({ tag: options.tag, order: 'oldest' });
  const stored = await catalog.strategy(options.tag);
  const override = stored?.manual ? { mode: stored.mode as Mode, reason: stored.reason } : undefined;
  const advice = suggest(
    resultRuns(records).map(toRunSummary),
    CATEGORIES,
    records[0]?.metricDirection ?? 'minimize',
    override,
    { allCategories: options.allCategories === true },
  );
  const variants = options.k === undefined ? undefined : proposeVariants(advice, options.k);
  if (wantsJson(options)) return printJson({ tag: options.tag, ...advice, ...(variants ? { variants } : {}) });
  console.log(`mode: ${advice.mode} (${advice.reason})`);
  console.log(
    `trend of the best: ${advice.trend.direction}${advice.trend.slopePerRun !== null ? ` (${advice.trend.slopePerRun.toExponential(2)} per run)` : ''}`,
  );
  console.log(`under-explored: ${advice.underExplored.join(', ') || '-'}`);
  console.log(`high-yield: ${advice.highYield.join(', ') || '-'}`);
  for (const pair of advice.combine)
    console.log(`combine ${pair.a} + ${pair.b}: "${pair.hypotheses[0]}" + "${pair.hypotheses[1]}" (${pair.why})`);
  if (variants) {
    console.log(`${variants.length} next variants for a batch:`);
    for (const [i, v] of variants.entries()) console.log(`  ${i + 1}. ${v.kind} (${v.category}): ${v.why}`);
  }
  console.log(
    formatTable(
      ['category', 'runs', 'kept', 'keep rate', 'crashes'],
      advice.categories
        .filter((c) => c.runs > 0)
        .map((c) => [c.category, c.runs, c.kept, `${(c.keepRate * 100).toFixed(0)}%`, c.crashes]),
    ),
  );
}
