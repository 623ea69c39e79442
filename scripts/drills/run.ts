/** Runs the chosen drill rows on one stack and returns a report per row. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { DrillContext, RowReport } from './row.js';
import { Row } from './row.js';
import { ROWS } from './rows.js';
import { DrillStack } from './stack.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/scripts/', import.meta.url));

export interface DrillOptions {
  quick: boolean;
  /** Row names to run (default: all). */
  rows?: string[];
  /** Server down time in the outage row (default 600 s, 30 s with quick). */
  outageSeconds?: number;
  /** Use this cluster instead of a local dev server; rows that stop the server are skipped. */
  externalAddress?: string;
  namespace?: string;
  log?: (line: string) => void;
}

export interface DrillReport {
  rows: RowReport[];
  seconds: number;
  /** Where the stack's logs are (kept when a row failed). */
  dir: string | null;
}

export const ROW_NAMES = ROWS.map((row) => row.name);

export function failed(report: RowReport): boolean {
  return Boolean(report.error) || report.lost + report.duplicated + report.orphaned + report.wrong > 0;
}

/** A repository holding the training fixtures, committed with a fixed identity. */
async function drillRepository(dir: string): Promise<{ repo: string; commit: string }> {
  const repo = path.join(dir, 'repo');
  await fs.mkdir(repo, { recursive: true });
  for (const name of await fs.readdir(FIXTURES)) {
    if (name.endsWith('.py')) await fs.copyFile(path.join(FIXTURES, name), path.join(repo, name));
  }
  const git = (...args: string[]) =>
    execa('git', ['-C', repo, '-c', 'user.name=drills', '-c', 'user.email=drills@expctl.invalid', ...args]);
  await git('init', '-q', '-b', 'main');
  await git('add', '-A');
  await git('commit', '-qm', 'drill fixtures');
  return { repo, commit: (await git('rev-parse', 'HEAD')).stdout.trim() };
}

export async function runDrills(options: DrillOptions): Promise<DrillReport> {
  const log = options.log ?? ((line: string) => console.error(line));
  const unknown = (options.rows ?? []).filter((name) => !ROW_NAMES.includes(name));
  if (unknown.length) throw new Error(`unknown drill row(s) ${unknown.join(', ')}; rows: ${ROW_NAMES.join(', ')}`);
  const specs = options.rows?.length ? ROWS.filter((row) => options.rows!.includes(row.name)) : ROWS;
  const startedAt = Date.now();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-drills-'));
  await fs.mkdir(path.join(dir, 'pids'), { recursive: true });
  const stack = new DrillStack({
    dir,
    externalAddress: options.externalAddress,
    namespace: options.namespace ?? 'default',
    log,
  });
  const reports: RowReport[] = [];
  try {
    const source = await drillRepository(dir);
    log(`drills: starting the stack in ${dir}`);
    await stack.start();
    const ctx: DrillContext = {
      stack,
      quick: options.quick,
      dir,
      source,
      log,
      outageSeconds: options.outageSeconds ?? (options.quick ? 30 : 600),
    };
    for (const spec of specs) {
      const rowStart = Date.now();
      if (spec.needsLocalServer && !stack.local) {
        reports.push({
          row: spec.name,
          submitted: 0,
          lost: 0,
          duplicated: 0,
          orphaned: 0,
          wrong: 0,
          states: {},
          seconds: 0,
          notes: [],
          skipped:
            'it stops the Temporal server, which an external cluster (TEMPORAL_ADDRESS) does not let the drills do',
        });
        continue;
      }
      log(`drills: ${spec.name}: ${spec.what}`);
      const row = new Row(spec.name, ctx);
      try {
        const remaining = await spec.run(row, ctx);
        reports.push(await row.finish(remaining, rowStart));
      } catch (error) {
        await row.abandon();
        reports.push({
          row: spec.name,
          submitted: row.runs.length,
          lost: 0,
          duplicated: 0,
          orphaned: 0,
          wrong: 0,
          states: {},
          seconds: Math.round((Date.now() - rowStart) / 100) / 10,
          notes: row.notes,
          error: (error as Error).message,
        });
      }
      const last = reports[reports.length - 1]!;
      log(`drills: ${spec.name}: ${failed(last) ? 'FAILED' : 'ok'} in ${last.seconds} s`);
    }
  } finally {
    await stack.stop().catch((error: Error) => log(`drills: stopping the stack: ${error.message}`));
  }
  const keep = reports.some(failed) || reports.length < specs.length;
  if (!keep) await fs.rm(dir, { recursive: true, force: true });
  return { rows: reports, seconds: Math.round((Date.now() - startedAt) / 1000), dir: keep ? dir : null };
}

/** The table: one line per row, then the notes that explain any non-zero count. */
export function formatReport(report: DrillReport): string {
  const header = [
    'row',
    'submitted',
    'lost',
    'duplicated',
    'orphaned',
    'wrong',
    'terminal states',
    'seconds',
    'result',
  ];
  const lines = report.rows.map((r) => [
    r.row,
    String(r.submitted),
    String(r.lost),
    String(r.duplicated),
    String(r.orphaned),
    String(r.wrong),
    Object.entries(r.states)
      .map(([state, n]) => `${state} ${n}`)
      .join(', ') || '-',
    String(r.seconds),
    r.skipped ? 'skipped' : r.error ? 'ERROR' : failed(r) ? 'FAIL' : 'ok',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const format = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const out = [format(header), format(widths.map((w) => '-'.repeat(w))), ...lines.map(format)];
  for (const r of report.rows) {
    if (r.skipped) out.push(`${r.row}: skipped: ${r.skipped}`);
    if (r.error) out.push(`${r.row}: error: ${r.error}`);
    for (const note of r.notes) out.push(`${r.row}: ${note}`);
  }
  out.push(`total ${report.seconds} s${report.dir ? `; logs kept in ${report.dir}` : ''}`);
  return out.join('\n');
}
