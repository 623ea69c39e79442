import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundMetrics, capTailBytes, LogFollower } from '../../src/gpu-worker/log-follower.js';
import { LOG_TAIL_BYTES } from '../../src/domain/limits.js';
import { parseSummaryBlock } from '../../src/domain/metrics.js';

let dir: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-follower-'));
});
afterAll(async () => fs.rm(dir, { recursive: true, force: true }));

const METRIC_BLOCK = '---\nval_bpb:          0.997900\npeak_vram_mb:     45060.2\nnum_steps:        953\n';

describe('the bounded log follower', () => {
  it('keeps a 100 MB line as its two ends and still parses the metric block after it', async () => {
    const file = path.join(dir, 'huge.log');
    const handle = await fs.open(file, 'w');
    await handle.write('step 00001/00010 | loss 2.000000\n');
    const piece = Buffer.alloc(1 << 20, 'x');
    piece.write('BEGIN', 0);
    for (let i = 0; i < 100; i++)
      await handle.write(i === 99 ? Buffer.concat([piece.subarray(0, piece.length - 3), Buffer.from('END')]) : piece);
    await handle.write(`\n${METRIC_BLOCK}`);
    await handle.close();

    const follower = new LogFollower(file);
    const before = process.memoryUsage().rss;
    await follower.poll();
    const growth = process.memoryUsage().rss - before;
    const lines = follower.tailLines();
    const huge = lines.find((line) => line.startsWith('BEGIN'))!;
    expect(huge).toMatch(/^BEGINx+ \[… \d+ bytes cut by expctl …\] x+END$/);
    expect(Buffer.byteLength(huge)).toBeLessThan(5000);
    expect(parseSummaryBlock(lines.join('\n'))).toEqual({ val_bpb: 0.9979, peak_vram_mb: 45060.2, num_steps: 953 });
    expect(follower.bytesRead).toBe((await fs.stat(file)).size);
    // Reading 100 MB through a 1 MiB buffer: no copy of the line is kept.
    expect(growth).toBeLessThan(64 * 1024 * 1024);
  });

  it('makes binary bytes printable and keeps the block after them', async () => {
    const file = path.join(dir, 'binary.log');
    const noise = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 256));
    await fs.writeFile(file, Buffer.concat([noise, Buffer.from(`\n${METRIC_BLOCK}`)]));
    const follower = new LogFollower(file);
    await follower.poll();
    const text = follower.tailText();
    // eslint-disable-next-line no-control-regex
    expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f]/);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(LOG_TAIL_BYTES);
    expect(parseSummaryBlock(follower.tailLines().join('\n'))?.val_bpb).toBe(0.9979);
  });

  it('keeps a bounded number of bytes of many lines, read incrementally, with \\r\\n split across reads', async () => {
    const file = path.join(dir, 'flood.log');
    const follower = new LogFollower(file, { keepLines: 1000, keepBytes: 32 * 1024 });
    for (let round = 0; round < 20; round++) {
      const lines = Array.from({ length: 500 }, (_, i) => `step ${round * 500 + i} | loss 1.0`).join('\r\n');
      await fs.appendFile(file, `${lines}\r`);
      await follower.poll();
      await fs.appendFile(file, '\n');
    }
    await fs.appendFile(file, METRIC_BLOCK);
    await follower.poll();
    const lines = follower.tailLines();
    expect(lines.join('\n').length).toBeLessThanOrEqual(32 * 1024);
    expect(lines).not.toContain('');
    expect(lines.at(-5)).toBe('step 9999 | loss 1.0');
    expect(parseSummaryBlock(lines.join('\n'))?.num_steps).toBe(953);
  });

  it('reads each byte once when polls overlap (heartbeats on a loaded host), and keeps the block', async () => {
    const file = path.join(dir, 'overlap.log');
    const steps = Array.from({ length: 20 }, (_, i) => `step ${String(i + 1).padStart(5, '0')}/00020 | loss 1.0\n`);
    await fs.writeFile(file, steps.slice(0, 12).join(''));
    const follower = new LogFollower(file);
    await Promise.all([follower.poll(), follower.poll(), follower.poll()]);
    await fs.appendFile(file, steps.slice(12).join(''));
    await Promise.all([follower.poll(), follower.poll()]);
    await fs.appendFile(file, METRIC_BLOCK);
    await Promise.all([follower.poll(), follower.poll(), follower.poll()]);

    expect(follower.tailLines()).toEqual([
      ...steps.map((line) => line.trimEnd()),
      ...METRIC_BLOCK.trimEnd().split('\n'),
    ]);
    expect(follower.bytesRead).toBe((await fs.stat(file)).size);
    expect(parseSummaryBlock(follower.tailLines().join('\n'))).toMatchObject({ val_bpb: 0.9979 });
  });

  it('caps a tail at 64 KiB, cutting at a line start with a visible marker', () => {
    const text = Array.from({ length: 10_000 }, (_, i) => `line ${i} é`).join('\n');
    const capped = capTailBytes(text);
    expect(Buffer.byteLength(capped)).toBeLessThanOrEqual(LOG_TAIL_BYTES);
    expect(capped.startsWith('[… earlier output cut by expctl …]\nline ')).toBe(true);
    expect(capped.endsWith('line 9999 é')).toBe(true);
    expect(capTailBytes('short')).toBe('short');
  });

  it('bounds a metric block: 64 keys, long string values cut', () => {
    const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i === 0 ? 'v'.repeat(5000) : i]));
    const bounded = boundMetrics(many)!;
    expect(Object.keys(bounded)).toHaveLength(64);
    expect(bounded.k0).toBe(`${'v'.repeat(256)}…`);
    expect(bounded.k1).toBe(1);
    expect(boundMetrics(null)).toBeNull();
  });
});
