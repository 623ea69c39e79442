import { describe, expect, it } from 'vitest';
import { classifyTraining, exitCodeFor, NO_TIMINGS, type TrainingOutcome } from '../../src/domain/experiment.js';
import { latestProgress, looksLikeOom, parseProgressLine, parseSummaryBlock } from '../../src/domain/metrics.js';

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
    expect(parseSummaryBlock('---\nval_bpb: 2\n---\nval_bpb: 1.5\nnote: fast run\n')).toEqual({ val_bpb: 1.5, note: 'fast run' });
    expect(parseSummaryBlock('step 1 | loss 2\n')).toBeUndefined();
    expect(parseSummaryBlock('---\n\n')).toBeUndefined();
  });
});

describe('progress', () => {
  it('parses step/total and loss from common progress formats', () => {
    expect(parseProgressLine('step 00012/00100 | loss 2.345678 | lr 0.1')).toMatchObject({ step: 12, totalSteps: 100, loss: 2.345678 });
    expect(parseProgressLine('step 00950 (98.1%) | loss: 3.012345')).toMatchObject({ step: 950, loss: 3.012345 });
    expect(parseProgressLine('epoch 1 done')).toEqual({ line: 'epoch 1 done' });
  });
  it('takes the latest progress line, skipping the metric block', () => {
    expect(latestProgress(AUTORESEARCH_LOG.split('\n'))).toMatchObject({ step: 960, loss: 3.01 });
  });
  it('recognizes CUDA out-of-memory text', () => {
    expect(looksLikeOom('torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB')).toBe(true);
    expect(looksLikeOom('ValueError: boom')).toBe(false);
  });
});

describe('classifyTraining', () => {
  const base: TrainingOutcome = { phase: 'training', supervisorKilled: false, oomKills: null, peakMemoryBytes: null, timings: NO_TIMINGS, exitCode: 0, signal: null, timedOut: false, canceled: false, metrics: { val_bpb: 1.2 }, logTail: '', logPath: '/x', startedAt: '', endedAt: '', artifacts: [], heartbeats: { count: 0, firstAt: null, lastAt: null, intervalSeconds: 2 } };
  it.each([
    [{}, false, 'completed'],
    [{ exitCode: 1, metrics: null }, false, 'command_failed'],
    [{ exitCode: 1, metrics: null }, true, 'oom'],
    [{ exitCode: null, signal: 'SIGKILL', metrics: null }, false, 'oom'],
    [{ timedOut: true, exitCode: null, signal: 'SIGKILL' }, false, 'timed_out'],
    [{ canceled: true }, false, 'canceled'],
    [{ metrics: { loss: 1 } }, false, 'command_failed'],
  ] as const)('%o (oom text: %s) → %s', (override, oom, status) => {
    expect(classifyTraining({ ...base, ...override }, 'val_bpb', oom).status).toBe(status);
  });
  it('maps terminal states to the CLI exit codes', () => {
    expect(['completed', 'validation_failed', 'command_failed', 'oom', 'timed_out', 'worker_lost', 'retry_exhausted', 'canceled'].map((s) => exitCodeFor(s as never))).toEqual([0, 2, 3, 3, 3, 4, 4, 5]);
  });
});
