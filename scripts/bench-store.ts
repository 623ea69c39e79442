/**
 * The fleet store's speed: upload (putFile) and download (getFile) throughput of each store beside
 * a plain copy of the same bytes on the same disk (fs.copyFile), and the restore time of a 1 GiB
 * checkpoint (getFile of a 1 GiB object: what a resumed run waits for before it starts). The
 * filesystem store is in a temp dir; the S3 store is a throwaway SeaweedFS server on this host (the
 * tests' own), or left out saying why. Medians over a few runs.
 */
import crypto from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FilesystemStore } from '../src/store/fs-store.js';
import { openStore } from '../src/store/open.js';
import type { FleetStore } from '../src/store/store.js';
import { startSeaweedFs } from '../test/helpers/seaweedfs.js';
import { formatTransfer, transferFigure } from './bench/figures.js';

const MiB = 1024 * 1024;

async function timed(run: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await run();
  return (performance.now() - started) / 1000;
}

/** A file of random bytes, written in 16 MiB blocks (never all in memory). */
async function randomFile(file: string, bytes: number): Promise<void> {
  const out = createWriteStream(file);
  for (let written = 0; written < bytes; written += 16 * MiB) {
    const block = crypto.randomBytes(Math.min(16 * MiB, bytes - written));
    if (!out.write(block)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** Changes the file's first bytes, so each upload is new content (the store keeps one object per content). */
async function freshContent(file: string): Promise<void> {
  const handle = await fs.open(file, 'r+');
  try {
    await handle.write(crypto.randomBytes(32), 0, 32, 0);
  } finally {
    await handle.close();
  }
}

interface Sizes {
  transferBytes: number;
  checkpointBytes: number;
  runs: number;
}

/** The plain copy's times for a file: the baseline of every figure of that file. */
async function plainCopy(file: string, dir: string, runs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const target = path.join(dir, `copy-${i}`);
    times.push(await timed(() => fs.copyFile(file, target)));
    await fs.rm(target);
  }
  return times;
}

async function transfers(name: string, store: FleetStore, file: string, dir: string, sizes: Sizes, copy: number[]) {
  const up: number[] = [];
  const down: number[] = [];
  for (let i = 0; i < sizes.runs; i++) {
    await freshContent(file);
    let sha256 = '';
    up.push(await timed(async () => (sha256 = (await store.putFile(file)).sha256)));
    const target = path.join(dir, `down-${i}`);
    down.push(await timed(() => store.getFile(sha256, target)));
    await fs.rm(target);
    await store.deleteObject(sha256);
  }
  console.log(
    `  ${`${name}: upload (putFile)`.padEnd(40)} ${formatTransfer(transferFigure(sizes.transferBytes, up, copy))}`,
  );
  console.log(
    `  ${`${name}: download (getFile)`.padEnd(40)} ${formatTransfer(transferFigure(sizes.transferBytes, down, copy))}`,
  );
}

async function restore(name: string, store: FleetStore, checkpoint: string, dir: string, sizes: Sizes, copy: number[]) {
  const { sha256 } = await store.putFile(checkpoint);
  const times: number[] = [];
  for (let i = 0; i < sizes.runs; i++) {
    const target = path.join(dir, `restored-${i}`);
    times.push(await timed(() => store.getFile(sha256, target)));
    await fs.rm(target);
  }
  await store.deleteObject(sha256);
  const figure = transferFigure(sizes.checkpointBytes, times, copy);
  console.log(`  ${`${name}: restore (getFile)`.padEnd(40)} ${formatTransfer(figure)}`);
}

export async function benchStore(quick = false): Promise<void> {
  const sizes: Sizes = quick
    ? { transferBytes: 32 * MiB, checkpointBytes: 128 * MiB, runs: 3 }
    : { transferBytes: 256 * MiB, checkpointBytes: 1024 * MiB, runs: 5 };
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-bench-store-'));
  const server = await startSeaweedFs();
  const stores: [string, FleetStore][] = [['filesystem', new FilesystemStore(path.join(dir, 'store'))]];
  if ('skipped' in server) console.log(`store on S3: left out (${server.skipped})`);
  else stores.push(['S3 (SeaweedFS)', await openStore(server.env('bench'))]);
  try {
    const file = path.join(dir, 'payload.bin');
    await randomFile(file, sizes.transferBytes);
    const copy = await plainCopy(file, dir, sizes.runs);
    console.log(
      `store: a ${sizes.transferBytes / MiB} MiB file, median of ${sizes.runs} runs each, on this host's disk (MB/s = 10^6 bytes/s)`,
    );
    console.log(
      `  ${'plain copy (fs.copyFile)'.padEnd(40)} ${formatTransfer(transferFigure(sizes.transferBytes, copy))}`,
    );
    for (const [name, store] of stores) await transfers(name, store, file, dir, sizes, copy);
    await fs.rm(file);

    const checkpoint = path.join(dir, 'checkpoint.pt');
    await randomFile(checkpoint, sizes.checkpointBytes);
    const checkpointCopy = await plainCopy(checkpoint, dir, sizes.runs);
    console.log(`store: restoring a ${sizes.checkpointBytes / MiB} MiB checkpoint, median of ${sizes.runs} runs each`);
    console.log(
      `  ${'plain copy (fs.copyFile)'.padEnd(40)} ${formatTransfer(transferFigure(sizes.checkpointBytes, checkpointCopy))}`,
    );
    for (const [name, store] of stores) await restore(name, store, checkpoint, dir, sizes, checkpointCopy);
  } finally {
    if (!('skipped' in server)) await server.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
