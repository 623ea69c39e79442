import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PinnedDataset } from '../../src/domain/dataset-refs.js';
import { layOutDatasets, layOutVersion } from '../../src/gpu-worker/dataset-layout.js';

let root: string;
let roots: { datasetsDir: string; dataDir: string };

async function store(content: string): Promise<{ sha256: string; bytes: number }> {
  const sha256 = crypto.createHash('sha256').update(content).digest('hex');
  await fs.mkdir(path.join(roots.dataDir, 'objects'), { recursive: true });
  await fs.writeFile(path.join(roots.dataDir, 'objects', sha256), content);
  return { sha256, bytes: Buffer.byteLength(content) };
}

async function pinned(version: number, contents: string[]): Promise<PinnedDataset> {
  const shards = [];
  for (const [index, content] of contents.entries())
    shards.push({ index, fileName: `part-${index}.jsonl`, ...(await store(content)) });
  return { ref: 'ngram@latest', dataset: 'ngram', version, manifestSha256: `manifest-${version}`, records: 2, shards };
}

beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-layout-'));
  roots = { datasetsDir: path.join(root, 'datasets'), dataDir: path.join(root, 'data') };
});
afterEach(() => fs.rm(root, { recursive: true, force: true }));

describe('laying a pinned version out on a host', () => {
  it('puts each shard under its file name in NAME@V, nothing else but its marker', async () => {
    const dir = await layOutVersion(await pinned(3, ['{"text":"a"}\n', '{"text":"b"}\n']), roots);
    expect(dir).toBe(path.join(roots.datasetsDir, 'ngram@3'));
    expect((await fs.readdir(dir)).sort()).toEqual(['.expctl-version.json', 'part-0.jsonl', 'part-1.jsonl']);
    expect(await fs.readFile(path.join(dir, 'part-1.jsonl'), 'utf8')).toBe('{"text":"b"}\n');
    expect((await fs.readdir(roots.datasetsDir)).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('reuses a version laid out before, and rebuilds one left half-made', async () => {
    const version = await pinned(1, ['x\n']);
    const dir = await layOutVersion(version, roots);
    const first = (await fs.stat(path.join(dir, '.expctl-version.json'))).mtimeMs;
    await layOutVersion(version, roots);
    expect((await fs.stat(path.join(dir, '.expctl-version.json'))).mtimeMs).toBe(first);
    await fs.rm(path.join(dir, '.expctl-version.json'));
    await fs.writeFile(path.join(dir, 'stray'), 'left by a crash');
    await layOutVersion(version, roots);
    expect((await fs.readdir(dir)).sort()).toEqual(['.expctl-version.json', 'part-0.jsonl']);
  });

  it('refuses a damaged store or a missing shard, leaving nothing behind', async () => {
    const version = await pinned(2, ['good\n']);
    await fs.writeFile(path.join(roots.dataDir, 'objects', version.shards[0]!.sha256), 'tampered\n');
    await expect(layOutVersion(version, roots)).rejects.toThrow(/hashes to .*the store is damaged/);
    const missing = { ...version, shards: [{ ...version.shards[0]!, sha256: 'f'.repeat(64) }] };
    await expect(layOutVersion(missing, roots)).rejects.toThrow(/is not in the dataset store/);
    expect(await fs.readdir(roots.datasetsDir)).toEqual([]);
  });

  it('maps every dataset to its directory', async () => {
    const dirs = await layOutDatasets([await pinned(5, ['a\n'])], roots);
    expect(dirs).toEqual({ ngram: path.join(roots.datasetsDir, 'ngram@5') });
  });
});
