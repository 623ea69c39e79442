import { describe, expect, it } from 'vitest';
import { exitCodeFor } from '../../src/domain/experiment.js';
import { latestProgress, parseProgressLine, parseSummaryBlock } from '../../src/domain/metrics.js';

const AUTORESEARCH_LOG = `step 00950 (98.1%) | loss: 3.012345 | lrm: 0.05 | dt: 310ms | tok/sec: 1,690,000 | mfu: 39.8% | epoch: 1 | remaining: 6s
step 00960 (99.3%) | loss: 3.010000 | remaining: 2s
---
val_bpb:          0.997900
training_seconds: 300.1
total_seconds:    325.9
peak_vram_mb:     45060.2
mfu_percent:      39.80
total_tokens_M:   499.6
num_steps:        953
num_params_M:     50.3
depth:            8
`;

describe('parseSummaryBlock', () => {
  it('reads every key of the autoresearch block as numbers', () => {
    expect(parseSummaryBlock(AUTORESEARCH_LOG)).toEqual({
      val_bpb: 0.9979,
      training_seconds: 300.1,
      total_seconds: 325.9,
      peak_vram_mb: 45060.2,
      mfu_percent: 39.8,
      total_tokens_M: 499.6,
      num_steps: 953,
      num_params_M: 50.3,
      depth: 8,
    });
  });
  it('uses the last block, keeps non-numeric values as text, and returns undefined without a block', () => {
    expect(parseSummaryBlock('---\nval_bpb: 2\n---\nval_bpb: 1.5\nnote: fast run\n')).toEqual({
      val_bpb: 1.5,
      note: 'fast run',
    });
    expect(parseSummaryBlock('step 1 | loss 2\n')).toBeUndefined();
    expect(parseSummaryBlock('---\n\n')).toBeUndefined();
  });
});

describe('progress', () => {
  it('parses step/total and loss from common progress formats', () => {
    expect(parseProgressLine('step 00012/00100 | loss 2.345678 | lr 0.1')).toMatchObject({
      step: 12,
      totalSteps: 100,
      loss: 2.345678,
    });
    expect(parseProgressLine('step 00950 (98.1%) | loss: 3.012345')).toMatchObject({ step: 950, loss: 3.012345 });
    expect(parseProgressLine('epoch 1 done')).toEqual({ line: 'epoch 1 done' });
  });
  it('takes the latest progress line, skipping the metric block', () => {
    expect(latestProgress(AUTORESEARCH_LOG.split('\n'))).toMatchObject({ step: 960, loss: 3.01 });
  });
  it('parses every field of the real autoresearch line', () => {
    const line =
      'step 00412 (37.5%) | loss: 3.214077 | lrm: 1.00 | dt: 312ms | tok/sec: 420,117 | mfu: 38.2% | epoch: 1 | remaining: 187s';
    expect(parseProgressLine(line)).toEqual({
      line,
      step: 412,
      percent: 37.5,
      loss: 3.214077,
      lrm: 1,
      dtMs: 312,
      tokPerSec: 420117,
      mfuPercent: 38.2,
      epoch: 1,
      remainingSeconds: 187,
    });
    expect(parseProgressLine('step 00012/00100 | loss 2.3')).toMatchObject({ step: 12, totalSteps: 100, percent: 12 });
  });
  it('takes the last of many \\r-separated lines on one physical line (train.py prints with end="")', () => {
    const physical =
      '\rstep 00410 (37.3%) | loss: 3.300000 | remaining: 188s \rstep 00411 (37.4%) | loss: 3.250000 | remaining: 187s \rstep 00412 (37.5%) | loss: 3.214077 | lrm: 1.00 | dt: 312ms | tok/sec: 420,117 | mfu: 38.2% | epoch: 1 | remaining: 187s ';
    // LogFollower splits on \r and \n; this is what it hands latestProgress.
    expect(latestProgress(physical.split(/\r\n|\r|\n/))).toMatchObject({
      step: 412,
      percent: 37.5,
      remainingSeconds: 187,
      tokPerSec: 420117,
    });
  });
});

describe('exit codes', () => {
  it('maps terminal states to the CLI exit codes', () => {
    expect(
      [
        'completed',
        'validation_failed',
        'command_failed',
        'oom',
        'timed_out',
        'worker_lost',
        'retry_exhausted',
        'gpu_failed',
        'canceled',
      ].map((s) => exitCodeFor(s as never)),
    ).toEqual([0, 2, 3, 3, 3, 4, 4, 4, 5]);
  });
});
