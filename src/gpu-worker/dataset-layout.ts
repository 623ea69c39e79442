import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { versionDirName, type PinnedDataset } from '../domain/dataset-refs.js';
import { PRIVATE_DIR_MODE } from '../security/files.js';

/** Written last into a laid-out version: a directory without it (or with another manifest) is rebuilt. */
const MARKER = '.expctl-version.json';

export interface LayoutRoots {
  /** The worker's datasets root: versions appear there as NAME@V. */
  datasetsDir: string;
  /** The dataset store: shards at objects/SHA256. */
  dataDir: string;
}

async function sha256Of(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function readMarker(dir: string): Promise<string | null> {
  try {
    return (JSON.parse(await fs.readFile(path.join(dir, MARKER), 'utf8')) as { manifestSha256: string }).manifestSha256;
  } catch {
    return null;
  }
}

/**
 * Lays a pinned version out under the datasets root as NAME@V (each shard under its file name),
 * from the store, checking every shard's hash: what the script reads is exactly what passed the
 * gates. Built beside and renamed into place, so a crash never leaves half a version; a version
 * laid out before (same manifest) is reused.
 */
export async function layOutVersion(pinned: PinnedDataset, roots: LayoutRoots): Promise<string> {
  const dir = path.join(roots.datasetsDir, versionDirName(pinned.dataset, pinned.version));
  if ((await readMarker(dir)) === pinned.manifestSha256) return dir;
  await fs.mkdir(roots.datasetsDir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const building = await fs.mkdtemp(
    path.join(roots.datasetsDir, `.${versionDirName(pinned.dataset, pinned.version)}-`),
  );
  try {
    for (const shard of pinned.shards) {
      const object = path.join(roots.dataDir, 'objects', shard.sha256);
      const target = path.join(building, path.basename(shard.fileName));
      const found = await fs.stat(object).catch(() => null);
      if (!found)
        throw new Error(
          `shard ${shard.index} of ${pinned.dataset}@${pinned.version} (${shard.sha256.slice(0, 12)}) is not in the dataset store ${roots.dataDir}`,
        );
      // A hard link costs nothing (another file system gets a copy); read-only, so a script
      // writing into its data cannot change the store's object behind the link.
      await fs.link(object, target).catch(() => fs.copyFile(object, target));
      await fs.chmod(target, 0o400);
      const actual = await sha256Of(target);
      if (actual !== shard.sha256)
        throw new Error(
          `shard ${shard.index} of ${pinned.dataset}@${pinned.version} in the store hashes to ${actual.slice(0, 12)}, not ${shard.sha256.slice(0, 12)}: the store is damaged`,
        );
    }
    await fs.writeFile(
      path.join(building, MARKER),
      JSON.stringify({ dataset: pinned.dataset, version: pinned.version, manifestSha256: pinned.manifestSha256 }),
    );
    await fs.rm(dir, { recursive: true, force: true });
    await fs.rename(building, dir).catch(async (error: NodeJS.ErrnoException) => {
      // Another slot of this host laid the same version out meanwhile: theirs is as good.
      if ((await readMarker(dir)) !== pinned.manifestSha256) throw error;
    });
    return dir;
  } finally {
    await fs.rm(building, { recursive: true, force: true });
  }
}

/** Every pinned version laid out; the variables that tell the training script where each is. */
export async function layOutDatasets(
  pinned: readonly PinnedDataset[],
  roots: LayoutRoots,
): Promise<Record<string, string>> {
  const dirs: Record<string, string> = {};
  for (const version of pinned) dirs[version.dataset] = await layOutVersion(version, roots);
  return dirs;
}
