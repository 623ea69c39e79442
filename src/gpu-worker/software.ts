import { execa } from 'execa';
import { queryGpus } from './discover.js';

const CACHE_MS = 5 * 60_000;
let cached: { at: number; versions: Promise<Record<string, string>> } | undefined;

async function probe(): Promise<Record<string, string>> {
  const versions: Record<string, string> = { node: process.version };
  for (const [name, command, args] of [
    ['python3', 'python3', ['--version']],
    ['uv', 'uv', ['--version']],
    ['git', 'git', ['--version']],
  ] as const) {
    try {
      const { stdout, stderr } = await execa(command, args, { timeout: 10_000 });
      versions[name] = (stdout || stderr).trim().split('\n')[0]!;
    } catch {
      // not installed on this host
    }
  }
  return versions;
}

/** Interpreter and runtime versions a host offers (probed at most every five minutes). */
export function softwareVersions(): Promise<Record<string, string>> {
  if (!cached || Date.now() - cached.at > CACHE_MS) cached = { at: Date.now(), versions: probe() };
  return cached.versions;
}

let cachedDriver: { at: number; version: Promise<string | null> } | undefined;

/** The GPU driver's version (null without nvidia-smi), asked at most every five minutes, not per run. */
export function driverVersion(): Promise<string | null> {
  if (!cachedDriver || Date.now() - cachedDriver.at > CACHE_MS) {
    const version = queryGpus().then(
      (gpus) => gpus?.[0]?.driverVersion ?? null,
      () => {
        cachedDriver = undefined; // a failed query is asked again by the next run
        return null;
      },
    );
    cachedDriver = { at: Date.now(), version };
  }
  return cachedDriver.version;
}
