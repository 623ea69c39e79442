/**
 * The stack the drills break: a Temporal dev server on a SQLite file (or a given cluster), and the
 * orchestrator and GPU workers as separate `expctl` processes, so each can be SIGKILLed on its own.
 */
import { ensureLocalAdmin, type Credential } from '../../src/security/credentials.js';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client, Connection } from '@temporalio/client';
import { execa, type ResultPromise } from 'execa';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { ensureKeyring } from '../../src/security/keyring.js';
import { connectClient } from '../../src/temporal/connection.js';
import { startDevServer, type DevServer } from '../../src/temporal/dev-server.js';
import { freePort, isPortFree } from '../../src/shared/ports.js';
import { ensureSearchAttributes } from '../../src/temporal/setup.js';
import { ensureTemporalCli } from '../../src/temporal/temporal-cli.js';
import { poolStateQuery } from '../../src/workflows/definitions.js';
import { waitUntil } from './wait.js';

const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));

/** One `expctl` process (orchestrator or worker), its output in a file of its own. */
export class StackProcess {
  readonly exited: Promise<unknown>;
  done = false;

  constructor(
    readonly name: string,
    readonly child: ResultPromise,
    readonly logFile: string,
  ) {
    this.exited = child.then(() => {
      this.done = true;
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  async log(): Promise<string> {
    return fs.readFile(this.logFile, 'utf8').catch(() => '');
  }

  /** Peak resident memory (VmHWM) in bytes, while the process lives; null where /proc has none. */
  async peakRssBytes(): Promise<number | null> {
    const status = await fs.readFile(`/proc/${this.pid}/status`, 'utf8').catch(() => '');
    const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : null;
  }

  async kill(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    if (this.done) return;
    this.child.kill(signal);
    if (signal === 'SIGTERM') {
      const stopped = await waitUntil(async () => this.done, 30_000).then(
        () => true,
        () => false,
      );
      if (stopped) return;
      this.child.kill('SIGKILL');
    }
    await this.exited;
  }
}

export interface StackOptions {
  /** Work directory: the server's db file, catalog, worker dirs, logs. */
  dir: string;
  /** A cluster to use instead of a local dev server (TEMPORAL_ADDRESS); its server is never restarted. */
  externalAddress?: string;
  namespace: string;
  log: (line: string) => void;
}

export class DrillStack {
  client!: Client;
  /** The admin credential of the drills' own state directory (issuer key beside it). */
  credential!: Credential;
  address = '';
  private server?: DevServer;
  private grpcPort = 0;
  private uiPort = 0;
  orchestrator?: StackProcess;
  readonly catalogPath: string;
  private readonly workers = new Set<StackProcess>();

  constructor(readonly options: StackOptions) {
    this.catalogPath = path.join(options.dir, 'catalog.sqlite');
  }

  get local(): boolean {
    return this.options.externalAddress === undefined;
  }

  /** The environment of the stack's `expctl` processes (and of any CLI call made against it). */
  env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      TEMPORAL_ADDRESS: this.address,
      TEMPORAL_NAMESPACE: this.options.namespace,
      EXPCTL_CATALOG: this.catalogPath,
      EXPCTL_HOME: path.join(this.options.dir, 'home'),
    };
  }

  async start(): Promise<void> {
    if (this.options.externalAddress) {
      this.address = this.options.externalAddress;
    } else {
      this.grpcPort = await freePort();
      this.uiPort = await freePort();
      await this.startServer();
    }
    // The keyring the environment names (EXPCTL_KEY_FILE / EXPCTL_KEY_COMMAND), else one of the drills' own.
    await ensureKeyring(this.env());
    this.credential = ensureLocalAdmin(this.env()).credential;
    this.client = await connectClient(this.env());
    if (!this.local) await ensureSearchAttributes(this.client.connection as Connection, this.options.namespace);
    await this.startOrchestrator();
  }

  /** Starts (or starts again) the local dev server on the same db file and ports. */
  async startServer(): Promise<void> {
    if (!this.local) throw new Error('the server of an external cluster is not the drills’ to start');
    // A killed server's ports are released a moment after it exits.
    await waitUntil(
      async () => (await isPortFree(this.grpcPort, '127.0.0.1')) && (await isPortFree(this.uiPort, '127.0.0.1')),
      60_000,
    );
    this.server = await startDevServer({
      binary: await ensureTemporalCli(),
      dbFile: path.join(this.options.dir, 'temporal.db'),
      ip: '127.0.0.1',
      grpcPort: this.grpcPort,
      uiPort: this.uiPort,
      logFile: path.join(this.options.dir, 'temporal.log'),
    });
    this.address = this.server.address;
  }

  /** The local dev server's pid, while it runs. */
  get serverPid(): number | undefined {
    return this.server?.pid;
  }

  async stopServer(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    if (signal === 'SIGTERM') await server.stop();
    else {
      try {
        process.kill(server.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      await server.exited;
    }
  }

  private spawn(name: string, args: string[], env: NodeJS.ProcessEnv = {}): StackProcess {
    const logFile = path.join(this.options.dir, 'logs', `${name}.log`);
    const child = execa(process.execPath, [EXPCTL, ...args], {
      env: { ...this.env(), ...env },
      extendEnv: false,
      stdin: 'ignore',
      stdout: { file: logFile, append: true },
      stderr: { file: logFile, append: true },
      reject: false,
      cleanup: true,
    });
    return new StackProcess(name, child, logFile);
  }

  /** Starts the orchestrator and waits until it polls (its workflow bundle is built by then). */
  async startOrchestrator(): Promise<StackProcess> {
    await fs.mkdir(path.join(this.options.dir, 'logs'), { recursive: true });
    const before = (await fs.readFile(path.join(this.options.dir, 'logs', 'orchestrator.log'), 'utf8').catch(() => ''))
      .length;
    const proc = this.spawn('orchestrator', ['orchestrator']);
    this.orchestrator = proc;
    await waitUntil(async () => {
      if (proc.done) throw new Error(`the orchestrator exited while starting:\n${(await proc.log()).slice(-2000)}`);
      return (await proc.log()).slice(before).includes('expctl orchestrator: polling');
    }, 180_000);
    return proc;
  }

  /**
   * Starts `expctl worker` for `host` and waits until the pool lists this very process (a new
   * incarnation) online. Runtime tags keep each drill's runs on the drill's own workers. With
   * `fleet` (a CSV in nvidia-smi's query format) its slots are fake GPUs instead of CPU slots.
   */
  async startWorker(
    host: string,
    slots: number,
    runtimeTag: string,
    fleet?: { csv: string; fakeBin: string },
    extraArgs: string[] = [],
  ): Promise<StackProcess> {
    await fs.mkdir(path.join(this.options.dir, 'logs'), { recursive: true });
    const pool = this.client.workflow.getHandle(POOL_WORKFLOW_ID);
    const previous = (await pool.query(poolStateQuery).catch(() => undefined))?.hosts[host]?.incarnation;
    const proc = this.spawn(
      `worker-${host}`,
      [
        'worker',
        '--host',
        host,
        ...(fleet ? [] : ['--cpu-slots', String(slots)]),
        '--runtime-tag',
        runtimeTag,
        '--work-dir',
        this.workerDir(host),
        ...extraArgs,
      ],
      fleet ? { PATH: `${fleet.fakeBin}${path.delimiter}${process.env.PATH}`, FAKE_NVIDIA_SMI_FLEET: fleet.csv } : {},
    );
    this.workers.add(proc);
    void proc.exited.then(() => this.workers.delete(proc));
    await waitUntil(async () => {
      if (proc.done) throw new Error(`the worker ${host} exited while starting:\n${(await proc.log()).slice(-2000)}`);
      const entry = (await pool.query(poolStateQuery).catch(() => undefined))?.hosts[host];
      return entry?.online === true && entry.incarnation !== previous;
    }, 180_000);
    return proc;
  }

  /** Runs `expctl ARGS` against the stack, as an operator's CLI. */
  async expctl(args: string[]): Promise<{ exitCode: number | undefined; stdout: string; stderr: string }> {
    const { exitCode, stdout, stderr } = await execa(process.execPath, [EXPCTL, ...args], {
      env: this.env(),
      extendEnv: false,
      reject: false,
    });
    return { exitCode, stdout: String(stdout), stderr: String(stderr) };
  }

  workerDir(host: string): string {
    return path.join(this.options.dir, 'workers', host);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.workers].map((w) => w.kill('SIGTERM')));
    await this.orchestrator?.kill('SIGTERM');
    await this.client?.connection.close().catch(() => undefined);
    await this.stopServer('SIGTERM');
  }
}
