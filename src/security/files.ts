import crypto from 'node:crypto';
import { constants as fsConstants, chmodSync, closeSync, lstatSync, mkdirSync, openSync, type Stats } from 'node:fs';
import fs from 'node:fs/promises';

/**
 * expctl's state is private to the user that runs it: directories 0700, files 0600. Set
 * explicitly where expctl creates state; the CLI's umask (0077, bin/expctl.js) is the backstop for
 * what child processes (the Temporal server, git, training) create.
 */
export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;
/** Options for fs.writeFile / fs.appendFile of a state file. */
export const PRIVATE_FILE = { mode: PRIVATE_FILE_MODE } as const;

/** Group or other permission bits that `stats` has, as "0644"-style text, or null when none. */
export function sharedMode(stats: Pick<Stats, 'mode'>): string | null {
  return stats.mode & 0o077 ? `0${(stats.mode & 0o777).toString(8)}` : null;
}

/**
 * Narrows `target` to `mode` when it allows group or other access. Another user's file (the CLI
 * reading a catalog it does not own) is left as it is: only its owner may change it.
 */
async function narrow(target: string, mode: number): Promise<void> {
  try {
    const stats = await fs.lstat(target);
    if (!stats.isSymbolicLink() && stats.mode & 0o077) await fs.chmod(target, mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'EPERM') throw error;
  }
}

function narrowSync(target: string, mode: number): void {
  try {
    const stats = lstatSync(target);
    if (!stats.isSymbolicLink() && stats.mode & 0o077) chmodSync(target, mode);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'EPERM') throw error;
  }
}

/** Creates `dir` (and missing parents) 0700; an existing one is narrowed to 0700. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  await narrow(dir, PRIVATE_DIR_MODE);
}

export function ensurePrivateDirSync(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  narrowSync(dir, PRIVATE_DIR_MODE);
}

/**
 * Makes sure `file` exists as a private file before another program opens it (SQLite, the
 * Temporal server, a log redirect), which would otherwise create it under the process umask.
 * Missing parents are created 0700; an existing file is narrowed to 0600, its content untouched.
 */
export async function ensurePrivateFile(file: string): Promise<void> {
  const handle = await fs.open(
    file,
    fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND,
    PRIVATE_FILE_MODE,
  );
  await handle.close();
  await narrow(file, PRIVATE_FILE_MODE);
}

export function ensurePrivateFileSync(file: string): void {
  try {
    closeSync(openSync(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_APPEND, PRIVATE_FILE_MODE));
  } catch (error) {
    // A catalog that another user owns and this one may only read: SQLite opens it read-only.
    if ((error as NodeJS.ErrnoException).code !== 'EACCES') throw error;
    return;
  }
  narrowSync(file, PRIVATE_FILE_MODE);
}

/** Narrows an existing directory to 0700 (state left by an older expctl); a missing one is left missing. */
export async function narrowExistingDir(dir: string): Promise<void> {
  await narrow(dir, PRIVATE_DIR_MODE);
}

/** Narrows an existing file to 0600 (one another program created); a missing one is left missing. */
export async function narrowFile(file: string): Promise<void> {
  await narrow(file, PRIVATE_FILE_MODE);
}

/**
 * Refuses a secret file (payload keys, a codec token) that group or other may read: the secret
 * would already be exposed, and loading it anyway would hide that.
 */
export async function assertPrivateFile(file: string, what: string): Promise<void> {
  const stats = await fs.stat(file);
  const shared = sharedMode(stats);
  if (shared)
    throw new Error(`${what} ${file} is open to other users (mode ${shared}); run \`chmod 600 ${file}\` and try again`);
}

/**
 * Replaces `file` with `content`: written beside it under a name no other writer uses, then renamed
 * into place, so a reader never sees a half-written file and two writers (a let-go watch and the
 * worker that re-attached its run) never rename each other's half away.
 */
export async function replacePrivateFile(file: string, content: string): Promise<void> {
  const temp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.partial`;
  try {
    await fs.writeFile(temp, content, { ...PRIVATE_FILE, flag: 'wx' });
    await fs.rename(temp, file);
  } finally {
    await fs.rm(temp, { force: true });
  }
}

/**
 * Creates `file` with `content` only if it does not exist: written beside it, then hard-linked
 * into place, so a reader never sees a half-written file and two writers never both win.
 */
export async function createExclusive(file: string, content: string): Promise<boolean> {
  const temp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  await fs.writeFile(temp, content, { ...PRIVATE_FILE, flag: 'wx' });
  try {
    await fs.link(temp, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await fs.rm(temp, { force: true });
  }
}
