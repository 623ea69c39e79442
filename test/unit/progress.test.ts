import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TrainingHeartbeat } from '../../src/activities/training.js';
import { barPayload, decodeHeartbeat, progressEvent, UnreadableHeartbeatError } from '../../src/cli/progress.js';
import { latestProgress } from '../../src/domain/metrics.js';
import { LogFollower } from '../../src/gpu-worker/log-follower.js';
import { EncryptionCodec } from '../../src/security/codec.js';
import { initKeyring, loadKeyring } from '../../src/security/keyring.js';

// autoresearch's train.py output as it reaches the log: each step redraws one line with \r.
const LINES = [
  'step 00411 (37.4%) | loss: 3.215001 | lrm: 1.00 | dt: 311ms | tok/sec: 419,876 | mfu: 38.2% | epoch: 1 | remaining: 188s    ',
  'step 00412 (37.5%) | loss: 3.214077 | lrm: 1.00 | dt: 312ms | tok/sec: 420,117 | mfu: 38.2% | epoch: 1 | remaining: 187s    ',
];

let dir: string;
let codec: EncryptionCodec;
let foreign: EncryptionCodec;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-progress-'));
  const keys = (name: string) => ({ EXPCTL_KEY_FILE: path.join(dir, name, 'payload-keys.json') });
  await initKeyring(keys('fleet'));
  await initKeyring(keys('other'));
  codec = new EncryptionCodec(() => loadKeyring(keys('fleet')));
  foreign = new EncryptionCodec(() => loadKeyring(keys('other')));
});
afterAll(async () => fs.rm(dir, { recursive: true, force: true }));

/** The client's data converter, as connectClient loads it: the SDK's payload converter, then the codec. */
const converter = () => ({ payloadConverter: defaultPayloadConverter, payloadCodecs: [codec] });

/** The progress the worker reads from a log holding `output` (watchRun: LogFollower, then latestProgress). */
async function progressOfLog(output: string) {
  const log = path.join(dir, `train-${Math.random().toString(36).slice(2)}.log`);
  await fs.writeFile(log, output);
  const follower = new LogFollower(log);
  await follower.poll();
  return latestProgress(follower.tailLines()) ?? null;
}

/** A training heartbeat as the worker sends it and the server returns it: encrypted by `by`. */
async function heartbeatPayload(details: unknown, by = codec): Promise<Payload> {
  const [payload] = await by.encode([defaultPayloadConverter.toPayload(details)]);
  return payload!;
}

const heartbeatOf = async (output: string): Promise<TrainingHeartbeat> => ({
  phase: 'training',
  progress: await progressOfLog(output),
  elapsedSeconds: 130,
  remainingSeconds: 470,
  killLimitSeconds: 660,
  supervisorPid: 4242,
  sentAt: new Date().toISOString(),
});

describe('heartbeats as the server returns them', () => {
  it('are encrypted: their bytes are no JSON, so they must go through the codec', async () => {
    const payload = await heartbeatPayload(await heartbeatOf(`\r${LINES.join('\r')}`));
    expect(() => JSON.parse(Buffer.from(payload.data!).toString('utf8'))).toThrow();
  });

  it("decode to the latest \\r progress line's fields, as JSON events and the bar show them", async () => {
    const payload = await heartbeatPayload(await heartbeatOf(`\r${LINES.join('\r')}`));
    const heartbeat = await decodeHeartbeat(converter(), payload);
    expect(progressEvent('exp-1', 'running', heartbeat)).toEqual({
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
      kill_limit_remaining_seconds: 530,
    });
    const { value, payload: shown } = barPayload('running', heartbeat);
    expect(value).toBe(37.5);
    expect(shown).toEqual({ status: 'running', percent: '37.5', step: 412, loss: 3.214077, left: '187s' });
  });

  it("a batch variant's events carry the batch and the variant after the experiment ID", async () => {
    const heartbeat = await decodeHeartbeat(converter(), await heartbeatPayload(await heartbeatOf(`\r${LINES[0]}`)));
    const event = progressEvent('exp-t-v2', 'running', heartbeat, { batch_id: 'batch-t', variant: 2 });
    expect(Object.keys(event).slice(0, 5)).toEqual(['event', 'experiment_id', 'batch_id', 'variant', 'status']);
    expect(event).toMatchObject({ batch_id: 'batch-t', variant: 2, step: 411, percent: 37.4, loss: 3.215001 });
  });

  it('a setup heartbeat (no process yet) decodes to no progress and the budget left', async () => {
    const setup = { phase: 'setup', progress: null, elapsedSeconds: 0, remainingSeconds: 300, supervisorPid: null };
    const heartbeat = await decodeHeartbeat(converter(), await heartbeatPayload(setup));
    expect(progressEvent('exp-1', 'preparing', heartbeat)).toMatchObject({
      percent: null,
      step: null,
      loss: null,
      remaining_seconds: 300,
    });
    expect(barPayload('preparing', heartbeat).payload).toEqual({
      status: 'preparing',
      percent: '-',
      step: '-',
      loss: '-',
      left: '300s',
    });
  });

  it('step/total lines give the percent', async () => {
    const heartbeat = await decodeHeartbeat(
      converter(),
      await heartbeatPayload(await heartbeatOf('step 400/1000 | loss 2.0\n')),
    );
    expect(barPayload('running', heartbeat).value).toBe(40);
  });

  it('a plaintext, foreign-key or malformed heartbeat is refused with the reason, never read as empty', async () => {
    const details = await heartbeatOf(`\r${LINES[1]}`);
    await expect(decodeHeartbeat(converter(), defaultPayloadConverter.toPayload(details))).rejects.toThrow(
      /^heartbeat not decoded: payload_not_encrypted/,
    );
    await expect(decodeHeartbeat(converter(), await heartbeatPayload(details, foreign))).rejects.toThrow(
      /^heartbeat not decoded: unknown_key/,
    );
    const notAHeartbeat = decodeHeartbeat(converter(), await heartbeatPayload({ progress: { step: 'x' } }));
    await expect(notAHeartbeat).rejects.toBeInstanceOf(UnreadableHeartbeatError);
    await expect(notAHeartbeat).rejects.toThrow(/not a training heartbeat: .*progress\.step.*elapsedSeconds/);
  });
});

describe('no heartbeat yet', () => {
  it('the bar shows the status and nothing else', () => {
    expect(barPayload('queued', undefined)).toEqual({
      value: 0,
      payload: { status: 'queued', percent: '-', step: '-', loss: '-', left: '-' },
    });
  });
});
