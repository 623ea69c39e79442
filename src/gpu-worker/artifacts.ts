import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PRIVATE_FILE } from '../security/files.js';

export const MANIFEST_NAME = 'expctl-manifest.json';

async function sha256(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function walk(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  const files: string[] = [];
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await walk(full)));
    else if (entry.isFile() && entry.name !== MANIFEST_NAME) files.push(full);
  }
  return files.sort();
}

/**
 * Lists what a run wrote to its artifact directory (path, size, sha256) and writes a manifest
 * beside the files naming the experiment, commit and config, so a file found later leads back.
 * `scrub` cleans the names the list and the manifest hold (a run may name a file after a secret).
 */
export async function writeArtifactManifest(
  dir: string,
  origin: { experimentId: string; commit: string; tag: string; configPath: string | null },
  scrub: (text: string) => string = (text) => text,
): Promise<{ path: string; sha256: string; bytes: number }[]> {
  const artifacts = [];
  for (const file of await walk(dir)) {
    artifacts.push({
      path: scrub(path.relative(dir, file)),
      sha256: await sha256(file),
      bytes: (await fs.stat(file)).size,
    });
  }
  origin = { ...origin, configPath: origin.configPath === null ? null : scrub(origin.configPath) };
  if (artifacts.length > 0)
    await fs.writeFile(
      path.join(dir, MANIFEST_NAME),
      `${JSON.stringify({ ...origin, artifacts }, null, 2)}\n`,
      PRIVATE_FILE,
    );
  return artifacts;
}
