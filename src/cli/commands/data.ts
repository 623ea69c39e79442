import { parseDatasetRef } from '../../domain/dataset-refs.js';
import { formatDuration, parseDuration } from '../../domain/duration.js';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Client } from '@temporalio/client';
import { addShard, configureDataset, declaredSha256, shardRefusal } from '../../client/datasets.js';
import {
  DATA_REFUSAL_EXIT_CODE,
  DATASET_NAME_PATTERN,
  DATASET_NAME_TEXT,
  isIgnoredFileName,
  LATE_POLICIES,
  parseShardFileName,
  SHA256_PATTERN,
  type AddShardResult,
  type DatasetPolicy,
  type LatePolicy,
} from '../../domain/datasets.js';
import { historyText } from '../../domain/gates.js';
import { MAX_SHARDS_PER_VERSION, shardPositionProblem, shardSizeProblem } from '../../domain/bounds.js';
import { connectClient } from '../../temporal/connection.js';
import { openCatalog } from '../catalog-view.js';
import { asRefusal } from '../refusal.js';
import { CliError, formatTable, printJson, printJsonLine, safeText, wantsJson } from '../output.js';
import { parseNumber } from '../parse.js';
import { EXIT_CODES } from '../../domain/exit-codes.js';

function checkDataset(name: string): string {
  if (!DATASET_NAME_PATTERN.test(name))
    throw new CliError(`dataset "${safeText(name)}" must be ${DATASET_NAME_TEXT}`, EXIT_CODES.validation_failed);
  return name;
}

function duration(flag: string, raw: string): number {
  try {
    return parseDuration(raw);
  } catch (error) {
    throw new CliError(`${flag}: ${(error as Error).message}`, EXIT_CODES.validation_failed);
  }
}

/** `--since`: an ISO time, or a duration back from now ("7d", "12h"). */
export function parseSince(raw: string, now = Date.now()): string {
  if (/^\d+(ms|s|m|h|d)$/.test(raw)) return new Date(now - parseDuration(raw)).toISOString();
  const at = Date.parse(raw);
  if (Number.isNaN(at))
    throw new CliError(
      `--since "${safeText(raw)}": expected an ISO time (2026-11-20T00:00Z) or a duration back from now (7d, 12h)`,
      EXIT_CODES.validation_failed,
    );
  return new Date(at).toISOString();
}

export interface DataAddOptions {
  version?: string;
  shard?: string;
  sha256?: string;
  records?: string;
  lateness?: string;
  json?: boolean;
}

type Delivery = { file: string } & ({ result: AddShardResult } | { error: string; message: string });

/** Offers one shard; a refusal comes back as an entry (its code as `error`), never half-reported. */
async function deliver(client: Client, offer: Parameters<typeof addShard>[1]): Promise<Delivery> {
  try {
    return { file: offer.file, result: await addShard(client, offer) };
  } catch (error) {
    const refusal = shardRefusal(error);
    if (refusal) return { file: offer.file, error: refusal.code, message: refusal.message };
    throw asRefusal(error);
  }
}

function deliveryLine(d: Delivery): string {
  if ('error' in d) return `${safeText(d.file)}: refused (${d.error}): ${safeText(d.message)}`;
  const r = d.result;
  const where =
    r.outcome === 'late_next'
      ? `late for ${r.dataset}@${r.lateFor}, taken into ${r.dataset}@${r.version}`
      : `${r.outcome} in ${r.dataset}@${r.version}`;
  return `${safeText(d.file)}: shard ${r.shardIndex}/${r.shardCount} ${where} (sha256 ${r.sha256.slice(0, 12)}…, ${r.records ?? '?'} records)${r.sealed ? `; ${r.dataset}@${r.version} sealed` : ''}`;
}

/** `data add DATASET FILE...`: each file a shard (0..k-1 of k, or the one `--shard i/N`). */
export async function dataAddCommand(dataset: string, files: string[], options: DataAddOptions): Promise<void> {
  checkDataset(dataset);
  if (files.length === 0) throw new CliError('data add needs at least one FILE', EXIT_CODES.validation_failed);
  if (files.length > MAX_SHARDS_PER_VERSION)
    throw new CliError(
      `data add: ${files.length} files; a version holds at most ${MAX_SHARDS_PER_VERSION} shards`,
      EXIT_CODES.validation_failed,
    );
  let position: { index: number; count: number } | undefined;
  if (options.shard !== undefined) {
    const match = /^(\d{1,30})\/(\d{1,30})$/.exec(options.shard);
    if (!match)
      throw new CliError(
        `--shard ${JSON.stringify(safeText(options.shard))}: expected i/N with 0 <= i < N, e.g. 3/8`,
        EXIT_CODES.validation_failed,
      );
    const problem = shardPositionProblem(Number(match[1]), Number(match[2]));
    if (problem)
      throw new CliError(
        `--shard ${JSON.stringify(safeText(options.shard))}: ${problem}`,
        EXIT_CODES.validation_failed,
      );
    if (files.length > 1)
      throw new CliError('--shard names one shard: give one FILE with it', EXIT_CODES.validation_failed);
    position = { index: Number(match[1]), count: Number(match[2]) };
  }
  if (options.sha256 !== undefined) {
    if (!SHA256_PATTERN.test(options.sha256.toLowerCase()))
      throw new CliError(
        `--sha256 "${safeText(options.sha256)}": expected 64 hex digits`,
        EXIT_CODES.validation_failed,
      );
    if (files.length > 1)
      throw new CliError("--sha256 declares one file's hash: give one FILE with it", EXIT_CODES.validation_failed);
  }
  if (options.records !== undefined && files.length > 1)
    throw new CliError("--records declares one file's count: give one FILE with it", EXIT_CODES.validation_failed);
  const declaredRecords =
    options.records === undefined
      ? undefined
      : attempt(() => parseNumber('--records', options.records!, { integer: true, min: 0 }));
  const version =
    options.version === undefined
      ? undefined
      : attempt(() => parseNumber('--version', options.version!, { integer: true, min: 1 }));
  const latenessMs = options.lateness === undefined ? undefined : duration('--lateness', options.lateness);
  for (const file of files) {
    const stat = await fsp.stat(file).catch(() => null);
    if (!stat?.isFile()) throw new CliError(`${safeText(file)} is not a readable file`, EXIT_CODES.validation_failed);
    const tooLarge = shardSizeProblem(stat.size);
    if (tooLarge) throw new CliError(`${safeText(file)}: ${tooLarge}`, EXIT_CODES.validation_failed);
  }

  const client = await connectClient();
  const deliveries: Delivery[] = [];
  for (const [i, file] of files.entries()) {
    deliveries.push(
      await deliver(client, {
        dataset,
        file,
        version,
        shardIndex: position?.index ?? i,
        shardCount: position?.count ?? files.length,
        declaredSha256: await declaredSha256(file, options.sha256),
        declaredRecords,
        latenessMs,
      }),
    );
  }
  const refused = deliveries.filter((d) => 'error' in d);
  if (wantsJson(options))
    printJson({ dataset, shards: deliveries.map((d) => ('result' in d ? { file: d.file, ...d.result } : d)) });
  else for (const d of deliveries) console.log(deliveryLine(d));
  if (refused.length > 0) process.exitCode = DATA_REFUSAL_EXIT_CODE;
}

function attempt<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw new CliError((error as Error).message, EXIT_CODES.validation_failed);
  }
}

/**
 * `data watch DIR`: registers shard files as a producer drops them. Names follow
 * `NAME-SHARD-of-COUNT.EXT` (`train-00003-of-00008.jsonl`); partial files (`*.tmp`, `*.part`,
 * dotfiles) and `*.sha256` sidecars are skipped. fs.watch reacts at once; a rescan every
 * `--rescan` (default 5 s) catches whatever an event missed. A file is offered again only when its
 * size or mtime changed (the dataset counts identical content once anyway).
 */
export async function dataWatchCommand(
  dir: string,
  options: { dataset?: string; once?: boolean; rescan?: string; lateness?: string; json?: boolean },
): Promise<void> {
  if (options.dataset !== undefined) checkDataset(options.dataset);
  const rescanMs = options.rescan === undefined ? 5000 : duration('--rescan', options.rescan);
  const latenessMs = options.lateness === undefined ? undefined : duration('--lateness', options.lateness);
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory())
    throw new CliError(`${safeText(dir)} is not a directory`, EXIT_CODES.validation_failed);
  const client = await connectClient();
  const json = wantsJson(options);
  const offered = new Map<string, string>();
  const warned = new Set<string>();
  const say = (value: unknown, text: string) => (json ? printJsonLine(value) : console.log(text));

  const scanOnce = async () => {
    for (const name of (await fsp.readdir(dir)).sort()) {
      if (isIgnoredFileName(name)) continue;
      const file = path.join(dir, name);
      const stat = await fsp.stat(file).catch(() => null);
      if (!stat?.isFile()) continue;
      const parsed = parseShardFileName(name);
      if (!parsed) {
        if (!warned.has(name))
          say(
            { file, skipped: 'name is not NAME-SHARD-of-COUNT.EXT' },
            `${safeText(file)}: skipped (name is not NAME-SHARD-of-COUNT.EXT)`,
          );
        warned.add(name);
        continue;
      }
      const key = `${stat.size}:${stat.mtimeMs}`;
      if (offered.get(file) === key) continue;
      offered.set(file, key);
      const tooLarge = shardSizeProblem(stat.size);
      if (tooLarge) {
        say({ file, skipped: tooLarge }, `${safeText(file)}: skipped (${tooLarge})`);
        continue;
      }
      const delivery = await deliver(client, {
        dataset: options.dataset ?? parsed.dataset,
        file,
        shardIndex: parsed.shardIndex,
        shardCount: parsed.shardCount,
        declaredSha256: await declaredSha256(file),
        latenessMs,
      });
      say('result' in delivery ? { file, ...delivery.result } : delivery, deliveryLine(delivery));
    }
  };
  let running: Promise<void> = Promise.resolve();
  let again = false;
  const scan = () => {
    if (again) return running;
    again = true;
    running = running.then(async () => {
      again = false;
      await scanOnce();
    });
    return running;
  };
  await scan();
  if (options.once) return;
  const watcher = fs.watch(
    dir,
    () => void scan().catch((error: unknown) => console.error(`expctl: ${(error as Error).message}`)),
  );
  const timer = setInterval(
    () => void scan().catch((error: unknown) => console.error(`expctl: ${(error as Error).message}`)),
    rescanMs,
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  watcher.close();
  clearInterval(timer);
  await running;
}

export async function dataPolicyCommand(
  dataset: string,
  options: { lateness?: string; latePolicy?: string; json?: boolean },
): Promise<void> {
  checkDataset(dataset);
  const policy: Partial<DatasetPolicy> = {};
  if (options.lateness !== undefined) policy.latenessMs = duration('--lateness', options.lateness);
  if (options.latePolicy !== undefined) {
    if (!(LATE_POLICIES as readonly string[]).includes(options.latePolicy))
      throw new CliError(`--late-policy must be one of ${LATE_POLICIES.join(', ')}`, EXIT_CODES.validation_failed);
    policy.latePolicy = options.latePolicy as LatePolicy;
  }
  const client = await connectClient();
  const state = await configureDataset(client, dataset, policy).catch((error: unknown) => {
    throw asRefusal(error);
  });
  if (wantsJson(options)) return printJson(state.policy);
  console.log(
    `dataset ${dataset}: lateness allowance ${formatDuration(state.policy.latenessMs)}, late shards ${state.policy.latePolicy === 'next' ? 'go to the next version' : 'are refused'}`,
  );
}

export async function dataVersionsCommand(dataset: string | undefined, options: { json?: boolean }): Promise<void> {
  if (dataset !== undefined) checkDataset(dataset);
  const rows = await (await openCatalog()).datasetVersions(dataset);
  if (wantsJson(options)) return printJson(rows);
  console.log(
    formatTable(
      ['dataset', 'version', 'status', 'shards', 'records', 'sealed', 'seal', 'manifest'],
      rows.map((r) => [
        r.dataset,
        r.version,
        r.status,
        `${r.arrivedShards}/${r.expectedShards}`,
        r.records,
        r.sealedAt,
        r.sealReason,
        r.manifestSha256?.slice(0, 12),
      ]),
    ),
  );
}

export async function dataShowCommand(ref: string, options: { json?: boolean }): Promise<void> {
  const reference = parseDatasetRef(ref);
  if (reference.kind !== 'version' || reference.version === 'latest')
    throw new CliError(`"${safeText(ref)}": expected NAME@VERSION, e.g. train@3`, EXIT_CODES.validation_failed);
  const parsed = { dataset: reference.dataset, version: reference.version };
  const detail = await (await openCatalog()).datasetVersion(parsed.dataset, parsed.version);
  if (!detail) throw new CliError(`no dataset version ${parsed.dataset}@${parsed.version} in the catalog`);
  const row = detail;
  if (wantsJson(options)) return printJson(detail);
  console.log(
    `${row.dataset}@${row.version}: ${row.status}; ${row.arrivedShards}/${row.expectedShards} shards, ${row.records ?? '?'} records; ` +
      `opened ${row.openedAt}${row.sealedAt ? `, sealed ${row.sealedAt} (${row.sealReason})` : ''}${row.manifestSha256 ? `; manifest ${row.manifestSha256}` : ''}`,
  );
  console.log(
    formatTable(
      ['shard', 'sha256', 'bytes', 'records', 'deliveries', 'file', 'arrived'],
      detail.shards.map((s) => [
        `${s.index}/${s.count}`,
        s.sha256.slice(0, 16),
        s.bytes,
        s.records,
        s.deliveries,
        s.fileName,
        s.arrivedAt,
      ]),
    ),
  );
  if (detail.gates.length)
    console.log(
      formatTable(
        ['gate', 'result', 'code', 'why', 'before'],
        detail.gates.map((g) => [
          g.gate,
          g.passed ? 'passed' : 'FAILED',
          g.code,
          g.message,
          g.history ? historyText(g.history) : null,
        ]),
      ),
    );
  for (const late of detail.lateShards)
    console.log(
      `late: shard ${late.shardIndex}/${late.shardCount} ${late.fileName} for @${late.version} at ${late.arrivedAt}: ${late.action === 'next' ? `taken into @${late.movedToVersion}` : 'refused'}`,
    );
  for (const alert of detail.alerts)
    console.log(`alert ${alert.at} ${alert.kind} ${alert.code ?? ''}: ${safeText(alert.message)}`);
}

export async function gatesCommand(options: { dataset?: string; since?: string; json?: boolean }): Promise<void> {
  if (options.dataset !== undefined) checkDataset(options.dataset);
  const since = options.since === undefined ? undefined : parseSince(options.since);
  const rows = await (await openCatalog()).gateStats({ dataset: options.dataset, since });
  if (wantsJson(options)) return printJson(rows);
  console.log(
    formatTable(
      ['day', 'gate', 'checked', 'passed', 'pass rate', 'failures'],
      rows.map((r) => [
        r.day,
        r.gate,
        r.checked,
        r.passed,
        `${(r.passRate * 100).toFixed(0)}%`,
        Object.entries(r.failures)
          .map(([code, n]) => `${code}×${n}`)
          .join(', ') || null,
      ]),
    ),
  );
}

export async function alertsCommand(options: { since?: string; json?: boolean }): Promise<void> {
  const since = options.since === undefined ? undefined : parseSince(options.since);
  const rows = await (await openCatalog()).alerts(since);
  if (wantsJson(options)) return printJson(rows);
  console.log(
    formatTable(
      ['at', 'kind', 'subject', 'code', 'command exit', 'message'],
      rows.map((a) => [a.at, a.kind, a.subject, a.code, a.commandExit, a.message]),
    ),
  );
}
