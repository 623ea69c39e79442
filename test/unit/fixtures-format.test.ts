import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { parseSummaryBlock } from '../../src/domain/metrics.js';
import { FIXTURES } from '../helpers/stack.js';

/** autoresearch's train.py progress line, as its f-string prints it (with end="" after a leading \r). */
const PROGRESS =
  /^step \d{5} \(\d+\.\d%\) \| loss: \d+\.\d{6} \| lrm: \d+\.\d{2} \| dt: \d+ms \| tok\/sec: \d{1,3}(,\d{3})* \| mfu: \d+\.\d% \| epoch: \d+ \| remaining: \d+s {4}$/;
const SUMMARY_KEYS = [
  'val_bpb',
  'training_seconds',
  'total_seconds',
  'peak_vram_mb',
  'mfu_percent',
  'total_tokens_M',
  'num_steps',
  'num_params_M',
  'depth',
];

describe('autoresearch_train.py prints what autoresearch prints', () => {
  it('\\r progress lines, a newline after the loop, then the 9-line --- block aligned at column 18', async () => {
    const { stdout } = await execa('python3', [path.join(FIXTURES, 'scripts', 'autoresearch_train.py')], {
      env: {
        EXPCTL_TIME_BUDGET: '0.5',
        STARTUP_SECONDS: '0.1',
        EVAL_SECONDS: '0.1',
        STEP_SECONDS: '0.02',
        VAL_BPB: '0.991234',
        PEAK_VRAM_MB: '45312',
      },
      stripFinalNewline: false,
    });
    const end = stdout.indexOf('\n---\n') + 1;
    const [training, summary] = [stdout.slice(0, end), stdout.slice(end + '---\n'.length)];
    expect(training.startsWith('\r')).toBe(true);
    expect(training.endsWith('    \n')).toBe(true); // print() after the loop
    const lines = training.slice(1, -1).split('\r');
    expect(lines.length).toBeGreaterThan(11);
    for (const line of lines) expect(line).toMatch(PROGRESS);
    expect(lines[0]).toMatch(/^step 00000 \(0\.0%\) \|/);
    expect(lines.at(-1)).toMatch(/\(100\.0%\) .* remaining: 0s {4}$/);

    const summaryLines = summary.trimEnd().split('\n');
    expect(summaryLines.map((l) => l.slice(0, 18).trimEnd().replace(/:$/, ''))).toEqual(SUMMARY_KEYS);
    for (const line of summaryLines) expect(line).toMatch(/^[a-z_A-Z]+: +\S+$/);
    for (const line of summaryLines) expect([line[17], line[18] === ' ']).toEqual([' ', false]); // values start after 18 characters
    expect(summaryLines[0]).toBe('val_bpb:          0.991234');
    expect(summaryLines[3]).toBe('peak_vram_mb:     45312.0');
    expect(summaryLines[4]).toMatch(/^mfu_percent:      \d+\.\d{2}$/);
    expect(summaryLines[8]).toBe('depth:            8');
    const metrics = parseSummaryBlock(stdout)!;
    expect(metrics).toMatchObject({ val_bpb: 0.991234, peak_vram_mb: 45312, num_steps: lines.length });
    expect(metrics.training_seconds as number).toBeGreaterThanOrEqual(0.5);
    expect(metrics.total_seconds as number).toBeGreaterThan(metrics.training_seconds as number);
  });

  it('the autotrader-style fixture prints score, sharpe and the val_pass guard', async () => {
    const { stdout } = await execa('python3', [path.join(FIXTURES, 'scripts', 'autotrader_train.py')], {
      env: {
        EXPCTL_TIME_BUDGET: '0.3',
        STARTUP_SECONDS: '0',
        EVAL_SECONDS: '0',
        STEP_SECONDS: '0.02',
        SCORE: '1.5',
        VAL_PASS: 'false',
      },
    });
    expect(parseSummaryBlock(stdout)).toMatchObject({ score: 1.5, sharpe: 1.84, val_pass: 'false', num_trades: 1287 });
    expect(stdout).toContain('\nval_pass:         false\n');
  });
});
