import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * Every file and directory under `root` (root included) that group or other may access, as
 * "0644 path" lines; symlinks are skipped (their own mode means nothing).
 */
export async function openToOthers(root: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (target: string): Promise<void> => {
    const stats = await fs.lstat(target).catch(() => undefined);
    if (!stats || stats.isSymbolicLink()) return;
    if (stats.mode & 0o077) found.push(`0${(stats.mode & 0o777).toString(8)} ${target}`);
    if (stats.isDirectory()) {
      const entries = await fs.readdir(target).catch(() => []);
      for (const entry of entries) await visit(path.join(target, entry));
    }
  };
  await visit(root);
  return found;
}

/** Whether a file exists now (what tests wait on: a pid file written, a record made). */
export function fileExists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
