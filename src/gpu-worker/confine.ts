import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Confinement of the paths a request names (datasets, checkpoints, the program, file arguments):
 * each must stay inside its root (the datasets root, the checkpoints root, the commit's tree) after
 * normalization and after following symlinks. The schema refuses the obvious forms; the worker
 * re-checks what the paths resolve to on its own disk and in the commit.
 */

/** A path relative to its root, normalized to POSIX form; null when absolute or leaving the root. Pure. */
export function confinedRelative(reference: string): string | null {
  if (reference === '' || reference.startsWith('~') || path.isAbsolute(reference) || path.posix.isAbsolute(reference))
    return null;
  if (/^[A-Za-z]:/.test(reference)) return null;
  const normalized = path.posix.normalize(reference.replace(/\\/g, '/')).replace(/\/+$/, '');
  if (normalized === '.' || normalized === '..' || normalized.startsWith('../')) return null;
  return normalized;
}

/** True when `candidate` is `root` or below it (both absolute, already resolved). Pure. */
export function isInside(root: string, candidate: string): boolean {
  const relative = path.relative(root, candidate);
  return relative === '' || (relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative));
}

/**
 * Where a symlink stored in a commit points, relative to the tree's root; null when it leaves the
 * tree (an absolute target, or one climbing out with ".."). Pure.
 */
export function symlinkTargetInTree(linkPath: string, target: string): string | null {
  if (path.posix.isAbsolute(target)) return null;
  return confinedRelative(path.posix.join(path.posix.dirname(linkPath), target));
}

export type RootResolution =
  | { ok: true; location: string }
  | { ok: false; problem: 'escapes' | 'missing' | 'symlink_escape'; location: string };

/** Resolves a reference under a directory root on this host, following symlinks, and checks it stays inside. */
export async function resolveUnderRoot(root: string, reference: string): Promise<RootResolution> {
  const relative = confinedRelative(reference);
  if (relative === null) return { ok: false, problem: 'escapes', location: reference };
  const location = path.join(path.resolve(root), relative);
  let realRoot: string;
  let realLocation: string;
  try {
    realRoot = await fs.realpath(root);
    realLocation = await fs.realpath(location);
  } catch {
    return { ok: false, problem: 'missing', location };
  }
  if (!isInside(realRoot, realLocation)) return { ok: false, problem: 'symlink_escape', location: realLocation };
  return { ok: true, location: realLocation };
}

/**
 * The argv the supervisor runs: a program named by its path inside the repository runs from the
 * worktree (never from the worker's cwd); a bare name is looked up on PATH.
 */
export function commandInTree(command: readonly string[], tree: string): string[] {
  const [program, ...args] = command as [string, ...string[]];
  if (!program.includes('/')) return [program, ...args];
  const relative = confinedRelative(program);
  if (relative === null) throw new Error(`the command's program ${program} is not inside the repository`);
  return [path.join(tree, relative), ...args];
}
