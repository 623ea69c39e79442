import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { formatFixed, parseColumns, resultsTsv, tsvField } from '../../src/catalog/tsv.js';
import { applyOutcome, newTagState, type TagState } from '../../src/domain/decision.js';
import { CATALOG_BACKENDS, stopTestPostgres } from '../helpers/catalogs.js';
import { recordRun, type RecordedRun } from '../helpers/records.js';

const python = (script: string, input: string, interpreter = 'python3'): string =>
  execFileSync(interpreter, ['-c', script], { input, encoding: 'utf8' });
// Debian's python3-pandas lands in the system interpreter, which may not be the python3 on PATH (pyenv).
const PANDAS_PYTHON = ['python3', '/usr/bin/python3'].find(
  (interpreter) => spawnSync(interpreter, ['-c', 'import pandas']).status === 0,
);
const HAS_PANDAS = PANDAS_PYTHON !== undefined;
if (!HAS_PANDAS)
  console.warn(
    'tsv.test.ts: pandas is not installed, so the pandas round trip is skipped; apt-get install python3-pandas (CI provisions it)',
  );

describe('formatFixed: Python f"{x:.Nf}"', () => {
  it('rounds the exact binary value, ties to even (45312 MB → 44.2, not 44.3)', () => {
    expect(formatFixed(45312 / 1024, 1)).toBe('44.2');
    expect((45312 / 1024).toFixed(1)).toBe('44.3'); // why toFixed is not used
    expect(formatFixed(0, 1)).toBe('0.0');
    expect(formatFixed(0, 6)).toBe('0.000000');
    expect(formatFixed(0.9979, 6)).toBe('0.997900');
  });

  it('agrees with python3 on many values', () => {
    const values = [0.25, 0.35, 2.675, 1.005, 44.25, 44.05, 0.15, 1e-7, 123456.789, 5e-7, 0.0000005, 0.9999995, 80.0];
    for (let i = 0; i < 300; i++) values.push(Math.round(Math.random() * 81920 * 10) / 10 / 1024, Math.random() * 3);
    const ours = values.map((v) => `${formatFixed(v, 1)} ${formatFixed(v, 6)}`).join('\n');
    const theirs = python(
      'import sys\nfor line in sys.stdin.read().split():\n    x = float(line)\n    print(f"{x:.1f} {x:.6f}")',
      values.map((v) => v.toPrecision(17)).join('\n'),
    );
    expect(`${ours}\n`).toBe(theirs);
  });
});

const NASTY = [
  'baseline',
  '"quoted" at the start',
  'tab\there',
  'two\nlines',
  'crlf\r\nend',
  'unicode: ÄÖÜ ñ 日本語 🚀 \u202e bidi',
  'ends with quote"',
  'a "middle" quote',
  '  leading spaces',
  'comma, and; semicolon',
];

afterAll(stopTestPostgres);

for (const backend of CATALOG_BACKENDS) {
  describe.skipIf(backend.skip)(`results.tsv as Python reads it, from ${backend.name}`, () => {
    let dir: string;
    let catalog: Catalog;
    let tsv: string;
    const runs: RecordedRun[] = [];

    beforeAll(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-tsv-'));
      catalog = await Catalog.open(await backend.fresh());
      let state: TagState = newTagState('mixed');
      const metric = { name: 'val_bpb', direction: 'minimize' as const };
      NASTY.forEach((description, i) => {
        const crash = i === 3;
        const value = 1 - i * 0.01 * (i % 2 ? -1 : 1);
        runs.push({
          id: `run${i}`,
          description,
          status: crash ? 'oom' : 'completed',
          metrics: crash ? null : { val_bpb: value, peak_vram_mb: 45312 + i, score: i * 1.5 },
        });
      });
      for (const run of runs) {
        const next = applyOutcome(state, {
          experimentId: run.id,
          status: run.status,
          metric: (run.metrics?.val_bpb as number) ?? null,
          acceleratorClass: 'h100',
          commit: 'x',
          metrics: run.metrics,
        });
        state = next.state;
        await recordRun(catalog, run, next.decision, metric);
      }
      tsv = resultsTsv(await catalog.list({ tag: 'mixed' }));
      fs.writeFileSync(path.join(dir, 'results.tsv'), tsv);
    });
    afterAll(async () => {
      await catalog?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('writes the header and rows autoresearch writes', () => {
      const lines = tsv.split('\n');
      expect(lines[0]).toBe('commit\tval_bpb\tmemory_gb\tstatus\tdescription');
      expect(lines[1]).toBe('0aaaaaa\t1.000000\t44.2\tkeep\tbaseline');
      expect(tsv).toContain('\t0.000000\t0.0\tcrash\t"two\nlines"\n');
    });

    it('is byte-identical to what Python csv.writer writes for the same rows', async () => {
      const cells = [['commit', 'val_bpb', 'memory_gb', 'status', 'description']];
      const records = await catalog.list({ tag: 'mixed', order: 'oldest' });
      for (const r of records) {
        const crash = r.status !== 'completed';
        cells.push([
          r.commit.slice(0, 7),
          crash ? '0.000000' : formatFixed(r.metric!, 6),
          crash ? '0.0' : formatFixed(r.peakVramMb! / 1024, 1),
          crash ? 'crash' : r.decision!,
          r.description,
        ]);
      }
      const written = python(
        "import csv, json, sys\nw = csv.writer(sys.stdout, delimiter='\\t', lineterminator='\\n')\nfor row in json.load(sys.stdin):\n    w.writerow(row)",
        JSON.stringify(cells),
      );
      expect(tsv).toBe(written);
    });

    it('round-trips every description through csv.reader(delimiter="\\t")', () => {
      const read = JSON.parse(
        python(
          "import csv, json, sys\nwith open(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.fileno(), newline='') as f:\n    print(json.dumps(list(csv.reader(f, delimiter='\\t'))))",
          tsv,
        ),
      ) as string[][];
      expect(read[0]).toEqual(['commit', 'val_bpb', 'memory_gb', 'status', 'description']);
      expect(read.slice(1).map((row) => row[4])).toEqual(NASTY);
      expect(read.every((row) => row.length === 5)).toBe(true);
    });

    it.skipIf(!HAS_PANDAS)(
      `round-trips every description through pandas.read_csv(sep="\\t")${HAS_PANDAS ? '' : ' (skipped: no pandas; apt-get install python3-pandas)'}`,
      () => {
        const read = JSON.parse(
          python(
            "import io, json, sys, pandas\ndf = pandas.read_csv(io.StringIO(sys.stdin.read()), sep='\\t', dtype=str, keep_default_na=False)\nprint(json.dumps({'columns': list(df.columns), 'description': list(df['description']), 'memory_gb': list(df['memory_gb'])}))",
            tsv,
            PANDAS_PYTHON,
          ),
        );
        expect(read.columns).toEqual(['commit', 'val_bpb', 'memory_gb', 'status', 'description']);
        expect(read.description).toEqual(NASTY);
        expect(read.memory_gb[0]).toBe('44.2');
      },
    );

    it('exports other block values with --columns', async () => {
      const columns = parseColumns('default,score');
      expect(columns).toEqual(['commit', 'metric', 'memory_gb', 'status', 'description', 'score']);
      const lines = resultsTsv(await catalog.list({ tag: 'mixed' }), parseColumns('commit,score,val_bpb')).split('\n');
      expect(lines.slice(0, 3)).toEqual(['commit\tscore\tval_bpb', '0aaaaaa\t0\t1.000000', '1aaaaaa\t1.5\t1.010000']);
      expect(lines[4]).toBe('3aaaaaa\t\t0.000000'); // the crash row has no block
      expect(() => parseColumns('commit,,status')).toThrow('empty column name');
      expect(() => parseColumns('default,status')).toThrow('--columns names "status" twice');
    });
  });
}

describe('tsvField', () => {
  it('quotes like QUOTE_MINIMAL', () => {
    expect(tsvField('plain text')).toBe('plain text');
    expect(tsvField('"x"')).toBe('"""x"""');
  });
});
