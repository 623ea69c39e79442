/**
 * A throwaway PostgreSQL server per test file: its own cluster in a temp dir, on a free port,
 * started with the machine's binaries (Debian's package or PATH), never the system's cluster.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execa, execaSync } from 'execa';
import pg from 'pg';
import { freePort } from '../../src/shared/ports.js';

export interface TestPostgres {
  /** A database of its own (`expctl`), ready to use. */
  url: string;
  /** The `postgres` database, for administration. */
  adminUrl: string;
  /** Creates a fresh, empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  stop(): Promise<void>;
}

const USER = 'expctl';
const INSTALL_HINT = 'install it with scripts/install-postgres (as root), or apt-get install postgresql';
const READY_TIMEOUT_MS = 60_000;

const isRoot = () => process.getuid?.() === 0;
const hasServer = (dir: string) => ['initdb', 'postgres'].every((name) => isExecutable(path.join(dir, name)));

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}

/** The directory with `initdb` and `postgres`: $EXPCTL_PG_BIN, PATH, else the newest Debian version. */
export function findPostgresBin(): string | null {
  const configured = process.env.EXPCTL_PG_BIN;
  if (configured) return hasServer(configured) ? configured : null;
  const initdb = onPath('initdb');
  // PATH often holds symlinks (/usr/local/bin/initdb): the real directory also has `postgres`.
  if (initdb && hasServer(path.dirname(fs.realpathSync(initdb)))) return path.dirname(fs.realpathSync(initdb));
  const debian = '/usr/lib/postgresql';
  const versions = fs.existsSync(debian) ? fs.readdirSync(debian).filter((name) => /^\d+(\.\d+)?$/.test(name)) : [];
  for (const version of versions.sort((a, b) => Number(b) - Number(a))) {
    if (hasServer(path.join(debian, version, 'bin'))) return path.join(debian, version, 'bin');
  }
  return null;
}

/** The `postgres` OS user's uid and gid (initdb and postgres refuse to run as root), or null. */
function postgresUser(): { uid: number; gid: number } | null {
  const id = (flag: string) => execaSync('id', [flag, 'postgres'], { reject: false });
  const [uid, gid] = [id('-u'), id('-g')];
  if (uid.exitCode !== 0 || gid.exitCode !== 0) return null;
  return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
}

/** Null when startPostgres can start a server here; otherwise why not, and how to provide one. */
export function postgresUnavailable(): string | null {
  if (!findPostgresBin()) {
    const configured = process.env.EXPCTL_PG_BIN;
    return configured
      ? `EXPCTL_PG_BIN=${configured} has no initdb and postgres`
      : `no PostgreSQL server binaries (initdb, postgres) here; ${INSTALL_HINT}`;
  }
  if (isRoot() && !postgresUser())
    return `running as root, and PostgreSQL refuses root: there is no 'postgres' user to run it as; ${INSTALL_HINT}`;
  if (isRoot() && !onPath('setpriv'))
    return 'running as root, and running PostgreSQL as its own user needs setpriv: apt-get install util-linux';
  return null;
}

/** Starts a fresh server, or says why it cannot here (the caller skips with that reason). */
export async function startPostgres(): Promise<TestPostgres | { skipped: string }> {
  const unavailable = postgresUnavailable();
  if (unavailable) return { skipped: unavailable };
  const bin = findPostgresBin()!;
  const owner = isRoot() ? postgresUser()! : null;
  // As root, run as `postgres` with setpriv: it execs, so the pid we signal is the server's own.
  const argv = (program: string, args: string[]): [string, string[]] =>
    owner
      ? ['setpriv', [`--reuid=${owner.uid}`, `--regid=${owner.gid}`, '--clear-groups', '--', program, ...args]]
      : [program, args];

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'expctl-pg-'));
  if (owner) fs.chownSync(dir, owner.uid, owner.gid);
  const data = path.join(dir, 'data');
  const logFile = path.join(dir, 'server.log');
  const log = () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : '(no log)');
  const removeDir = () => fs.rmSync(dir, { recursive: true, force: true });

  const [initdb, initdbArgs] = argv(path.join(bin, 'initdb'), [
    ...['-D', data, '-U', USER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'],
  ]);
  const init = await execa(initdb, initdbArgs, { cwd: dir, reject: false, all: true, timeout: 120_000 });
  if (init.exitCode !== 0) {
    removeDir();
    throw new Error(`initdb failed (exit ${init.exitCode ?? init.signal}):\n${init.all}`);
  }

  const port = await freePort();
  const [postgres, postgresArgs] = argv(path.join(bin, 'postgres'), [
    ...['-D', data, '-k', dir, '-h', '127.0.0.1', '-p', String(port), '-F'],
  ]);
  const toLog = { file: logFile, append: true } as const;
  const server = execa(postgres, postgresArgs, {
    cwd: dir,
    stdin: 'ignore',
    stdout: toLog,
    stderr: toLog,
    reject: false,
  });
  let exited = false;
  void server.then(() => (exited = true));
  // A test run that dies without stop() must not leave a server behind.
  const killOnExit = () => {
    try {
      if (!exited && server.pid) process.kill(server.pid, 'SIGKILL');
      removeDir();
    } catch {
      // Exiting anyway: leave what could not be cleaned.
    }
  };
  process.on('exit', killOnExit);

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      process.off('exit', killOnExit);
      if (!exited) {
        server.kill('SIGINT'); // fast shutdown: disconnects clients, then exits
        const timer = setTimeout(() => server.kill('SIGKILL'), 10_000);
        await server;
        clearTimeout(timer);
      }
      removeDir();
    })());

  const urlOf = (database: string) => `postgres://${USER}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  const adminUrl = urlOf('postgres');
  const admin = async <T>(work: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 });
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  };
  const createDatabase = async (name = `db_${crypto.randomBytes(6).toString('hex')}`) => {
    await admin((client) => client.query(`CREATE DATABASE "${name.replaceAll('"', '""')}"`));
    return urlOf(name);
  };

  try {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (exited) throw new Error('it exited');
      const ready = await admin(async () => true).catch(() => false);
      if (ready) break;
      if (Date.now() > deadline) throw new Error(`not ready within ${READY_TIMEOUT_MS / 1000} s`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return { url: await createDatabase(USER), adminUrl, createDatabase, stop };
  } catch (error) {
    const serverLog = log();
    await stop();
    throw new Error(`PostgreSQL on port ${port} did not start: ${(error as Error).message}\nserver log:\n${serverLog}`);
  }
}
