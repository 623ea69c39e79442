import { describe, expect, it } from 'vitest';
import type { TrainingHeartbeat } from '../../src/activities/training.js';
import { barPayload, progressEvent } from '../../src/cli/progress.js';
import { latestProgress } from '../../src/domain/metrics.js';

const LINE =
  'step 00412 (37.5%) | loss: 3.214077 | lrm: 1.00 | dt: 312ms | tok/sec: 420,117 | mfu: 38.2% | epoch: 1 | remaining: 187s';
const heartbeat = (progress: TrainingHeartbeat['progress']): TrainingHeartbeat => ({
  progress,
  elapsedSeconds: 130,
  remainingSeconds: 470,
  supervisorPid: 1,
});

describe('progress as expctl run shows it', () => {
  it("bar: percent done and the script's time left, never step counts as a total", () => {
    const { value, payload } = barPayload('running', heartbeat(latestProgress([`\r${LINE}`])!));
    expect(value).toBe(37.5);
    expect(payload).toEqual({ status: 'running', percent: '37.5', step: 412, loss: 3.214077, left: '187s' });
  });

  it('bar: step/total gives the percent; no progress yet gives 0 and the kill limit left', () => {
    expect(barPayload('running', heartbeat(latestProgress(['step 400/1000 | loss 2.0'])!)).value).toBe(40);
    expect(barPayload('queued', undefined)).toEqual({
      value: 0,
      payload: { status: 'queued', percent: '-', step: '-', loss: '-', left: '-' },
    });
    expect(barPayload('running', heartbeat(null)).payload.left).toBe('470s');
  });

  it('JSON progress lines carry every field of the real line', () => {
    expect(progressEvent('exp-1', 'running', heartbeat(latestProgress([LINE])!))).toEqual({
      event: 'progress',
      experiment_id: 'exp-1',
      status: 'running',
      percent: 37.5,
      step: 412,
      total_steps: null,
      loss: 3.214077,
      lrm: 1,
      dt_ms: 312,
      tok_per_sec: 420117,
      mfu_percent: 38.2,
      epoch: 1,
      remaining_seconds: 187,
      elapsed_seconds: 130,
      kill_limit_remaining_seconds: 470,
    });
  });
});
