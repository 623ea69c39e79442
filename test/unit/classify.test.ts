import { describe, expect, it } from 'vitest';
import { classifyTraining, lastErrorLine, looksLikeOom, oomEvidence, quotableLine } from '../../src/domain/classify.js';
import { NO_TIMINGS, type TerminalStatus, type TrainingOutcome } from '../../src/domain/experiment.js';

const BLOCK = { val_bpb: 0.9979, training_seconds: 300.1, total_seconds: 325.9, peak_vram_mb: 45060.2 };
const CUDA_OOM =
  'torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB';
const KERNEL_OOM = 'Out of memory: Killed process 4242 (python) total-vm:91234567kB, anon-rss:81234567kB';

const base: TrainingOutcome = {
  phase: 'training',
  exitCode: 0,
  signal: null,
  timedOut: false,
  canceled: false,
  supervisorKilled: false,
  oomKills: null,
  peakMemoryBytes: null,
  timings: NO_TIMINGS,
  metrics: BLOCK,
  logTail: 'step 00953 (100.0%) | loss: 3.0\n---\nval_bpb: 0.997900\n',
  logPath: '/x',
  startedAt: '',
  endedAt: '',
  artifacts: [],
  heartbeats: { count: 0, firstAt: null, lastAt: null, intervalSeconds: 2 },
};
const killed = { exitCode: null, signal: 'SIGKILL', metrics: null } as const;
const gpuFailure = {
  slotId: 'node1/gpu1',
  index: 1,
  uuid: 'GPU-2b1c',
  evidence: 'nvidia-smi no longer lists GPU 1',
  at: '2026-12-07T08:00:00.000Z',
};

/** [case, outcome fields, status, text the reason must contain] */
const TABLE: [string, Partial<TrainingOutcome>, TerminalStatus, RegExp][] = [
  ['exit 0 + block', {}, 'completed', /val_bpb = 0\.9979/],
  [
    'exit 0 + block + OOM text (a caught OOM in a batch-size probe)',
    { logTail: `${CUDA_OOM}\nretrying with batch 64\n---\nval_bpb: 0.99` },
    'completed',
    /training finished/,
  ],
  ['exit 0 + block + cgroup OOM kills of a child', { oomKills: 2 }, 'completed', /training finished/],
  ['exit 0 without a block', { metrics: null }, 'command_failed', /printed no --- metric block/],
  ['exit 0 with a block lacking the metric', { metrics: { loss: 1 } }, 'command_failed', /no numeric "val_bpb"/],
  ['canceled by expctl', { ...killed, canceled: true }, 'canceled', /canceled by an operator/],
  ['canceled wins over a block', { canceled: true }, 'canceled', /canceled/],
  [
    'a GPU failed mid-run: stopped by expctl',
    { exitCode: null, signal: 'SIGTERM', metrics: null, gpuFailure },
    'gpu_failed',
    /^GPU 1 \(node1\/gpu1, GPU-2b1c\) failed while the run trained: nvidia-smi no longer lists GPU 1; .*expctl retry ID --resume/,
  ],
  ['a GPU failure wins over a block printed after it', { gpuFailure }, 'gpu_failed', /GPU 1 \(node1\/gpu1/],
  ['canceled wins over a GPU failure', { ...killed, canceled: true, gpuFailure }, 'canceled', /canceled/],
  ['kill limit reached', { ...killed, timedOut: true }, 'timed_out', /kill limit/],
  ['kill limit reached with OOM text', { ...killed, timedOut: true, logTail: CUDA_OOM }, 'timed_out', /kill limit/],
  [
    'setup limit reached',
    { ...killed, timedOut: true, phase: 'setup' },
    'timed_out',
    /environment setup exceeded its setup limit/,
  ],
  [
    'setup failed',
    { exitCode: 1, metrics: null, phase: 'setup', logTail: 'error: No solution found when resolving dependencies' },
    'command_failed',
    /environment setup failed with exit code 1; last error line: error: No solution/,
  ],
  [
    'supervisor killed from inside the run',
    { ...killed, supervisorKilled: true },
    'command_failed',
    /supervisor was killed from inside the run/,
  ],
  [
    'exit 1 with CUDA OOM text',
    { exitCode: 1, metrics: null, logTail: `Traceback\n${CUDA_OOM}` },
    'oom',
    /CUDA out of memory/,
  ],
  [
    'exit 1 with CUBLAS_STATUS_ALLOC_FAILED',
    {
      exitCode: 1,
      metrics: null,
      logTail: 'RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate',
    },
    'oom',
    /CUBLAS_STATUS_ALLOC_FAILED/,
  ],
  [
    'exit 1 with torch.cuda.OutOfMemoryError',
    { exitCode: 1, metrics: null, logTail: 'torch.cuda.OutOfMemoryError: Tried to allocate' },
    'oom',
    /torch\.cuda\.OutOfMemoryError/,
  ],
  [
    'exit 137 without a block',
    { exitCode: 137, metrics: null, logTail: 'step 00100 (10.0%) | loss: 4.0' },
    'command_failed',
    /killed by SIGKILL that expctl did not send/,
  ],
  [
    'exit 137 without a block, cgroup counted an OOM kill',
    { exitCode: 137, metrics: null, oomKills: 1 },
    'oom',
    /1 OOM kill\(s\) counted by the run's cgroup/,
  ],
  [
    'SIGKILL without evidence',
    { ...killed },
    'command_failed',
    /killed by SIGKILL that expctl did not send .* no evidence of an out-of-memory kill/,
  ],
  ['SIGKILL with oomKills 0', { ...killed, oomKills: 0 }, 'command_failed', /did not send/],
  ['SIGKILL with cgroup OOM kills', { ...killed, oomKills: 3 }, 'oom', /3 OOM kill/],
  [
    'SIGKILL with the kernel oom-kill message',
    { ...killed, logTail: KERNEL_OOM },
    'oom',
    /Out of memory: Killed process 4242/,
  ],
  [
    'exit 1 with a bare "out of memory" (not CUDA/torch/kernel)',
    { exitCode: 1, metrics: null, logTail: 'ValueError: dataloader ran out of memory budget' },
    'command_failed',
    /^training exited with exit code 1; last error line: ValueError: dataloader ran out of memory budget$/,
  ],
  ['exit 1 with a block (a crash after printing)', { exitCode: 1 }, 'command_failed', /exit code 1/],
  [
    'SIGSEGV',
    { exitCode: null, signal: 'SIGSEGV', metrics: null },
    'command_failed',
    /killed by SIGSEGV, not sent by expctl/,
  ],
];

describe('classifyTraining: the one classification rule', () => {
  it.each(TABLE)('%s', (_name, override, status, reason) => {
    const verdict = classifyTraining({ ...base, ...override }, 'val_bpb');
    expect(verdict.status).toBe(status);
    expect(verdict.reason).toMatch(reason);
    expect(verdict.metric).toBe(status === 'completed' ? 0.9979 : null);
  });

  it('has at least 12 cases', () => expect(TABLE.length).toBeGreaterThanOrEqual(12));

  it('judges by the tag metric it is given', () => {
    expect(classifyTraining({ ...base, metrics: { score: 1.7, val_pass: 'True' } }, 'score')).toMatchObject({
      status: 'completed',
      metric: 1.7,
    });
  });
});

describe('OOM evidence', () => {
  it.each([
    [CUDA_OOM, true],
    ['torch.OutOfMemoryError: out of memory', true],
    ['torch.cuda.OutOfMemoryError: CUDA error', true],
    ['CUBLAS_STATUS_ALLOC_FAILED', true],
    [KERNEL_OOM, true],
    ['Memory cgroup out of memory: Killed process 77 (python3) total-vm:1kB', true],
    ['[12345.6] python3 invoked oom-killer: gfp_mask=0x140cca', true],
    ['ValueError: boom', false],
    ['the cache ran out of memory, evicting', false],
    ['java.lang.OutOfMemoryError: Java heap space', false],
  ] as const)('%s → %s', (text, expected) => {
    expect(looksLikeOom(text)).toBe(expected);
  });
  it('returns the line that proves it', () => {
    expect(oomEvidence(`step 1\n${CUDA_OOM}\nbye`)).toBe(CUDA_OOM.slice(0, 160));
  });
});

describe('the log line a crash reason quotes', () => {
  const TRACEBACK = [
    'step 00012 (4.0%) | loss: 5.1\rstep 00013 (4.3%) | loss: 5.0',
    'Traceback (most recent call last):',
    '  File "/w/train.py", line 40, in <module>',
    '    raise ValueError(f"bad lr {lr}")',
    'ValueError: bad lr -0.1',
    'wandb: Waiting for W&B process to finish... (failed 1).',
  ].join('\n');

  it.each([
    ['the last exception line of a traceback, over later chatter', TRACEBACK, 'ValueError: bad lr -0.1', true],
    [
      'the last of chained exceptions, dotted names included',
      'KeyError: 1\n\nDuring handling of the above exception, another exception occurred:\n\ntorch.cuda.DeferredCudaCallError: lazy init',
      'torch.cuda.DeferredCudaCallError: lazy init',
      true,
    ],
    ['a bare exception name', 'step 1\nKeyboardInterrupt\n', 'KeyboardInterrupt', true],
    [
      "another tool's error line",
      'resolving\nerror: No solution found\nhint: pin numpy',
      'error: No solution found',
      true,
    ],
    ['else the last line', 'step 1\nstep 2 | loss 3.0\n', 'step 2 | loss 3.0', false],
    ['the last segment of a \\r progress line', 'step 1\rstep 2\r', 'step 2', false],
  ] as const)('%s', (_name, tail, line, error) => {
    expect(lastErrorLine(tail)).toEqual({ line, error });
  });

  it('is null for an empty log', () => {
    expect(lastErrorLine('')).toBeNull();
    expect(lastErrorLine('\n \r\n')).toBeNull();
  });

  it('is scrubbed of credentials and safe on a terminal', () => {
    const tail =
      'ValueError: cannot reach postgres://trainer:hunter2hunter2@db:5432/runs \u001b[31mred\u001b[0m\u202edone\u0007';
    const found = lastErrorLine(tail)!;
    expect(found.line).toBe('ValueError: cannot reach postgres://trainer:[redacted]@db:5432/runs red\\u202edone\\x07');
    expect(found.line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/);
    expect(quotableLine(`  ${'x'.repeat(500)}  `)).toHaveLength(200);
    // As the worker's log follower stores it: each control character already U+FFFD.
    expect(lastErrorLine('ValueError: \uFFFD[1;31mbad\uFFFD[0m \uFFFD]0;title\uFFFDrate')!.line).toBe(
      'ValueError: bad rate',
    );
  });

  it("is what a failed run's reason carries", () => {
    const verdict = classifyTraining({ ...base, exitCode: 1, metrics: null, logTail: TRACEBACK }, 'val_bpb');
    expect(verdict).toMatchObject({
      status: 'command_failed',
      reason: 'training exited with exit code 1; last error line: ValueError: bad lr -0.1',
    });
    const silent = classifyTraining({ ...base, exitCode: 2, metrics: null, logTail: '' }, 'val_bpb');
    expect(silent.reason).toBe('training exited with exit code 2');
  });
});
