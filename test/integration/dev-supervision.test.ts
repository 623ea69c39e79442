import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { submitExperiment } from '../../src/client/experiments.js';
import { loadCredential } from '../../src/security/credentials.js';
import { dataConverter } from '../../src/temporal/connection.js';
import { freePort } from '../../src/shared/ports.js';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { hostRegistrationQuery } from '../../src/workflows/definitions.js';
import { makeRepo, processAlive } from '../helpers/repo.js';
import { FIXTURES } from '../helpers/stack.js';
import { eventually, waitFor } from '../helpers/wait.js';
import { fileExists } from '../helpers/files.js';

const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));
/** Longer than the 30–45 s after which the old `expctl dev` gave up on its server. */
const FREEZE_MS = Number(process.env.EXPCTL_TEST_FREEZE_SECONDS ?? 50) * 1000;

/** Processes whose command line mentions `dir` (the dev server, the workers' training supervisors). */
async function processesUsing(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(dir)) found.push(`${pid}: ${cmdline.replace(/\0/g, ' ')}`);
  }
  return found;
}

async function serversOn(home: string): Promise<string[]> {
  return (await processesUsing(path.join(home, 'temporal.db'))).filter((line) => line.includes('start-dev'));
}

async function serverPid(home: string): Promise<number | undefined> {
  const text = await fs.readFile(path.join(home, 'temporal.pid.json'), 'utf8').catch(() => undefined);
  return text ? (JSON.parse(text) as { pid: number }).pid : undefined;
}

interface DevProcess {
  child: ResultPromise;
  output(): string;
  waitForOutput(text: string, timeoutMs?: number): Promise<void>;
}

describe('expctl dev supervises its stack', () => {
  const started: ResultPromise[] = [];
  const homes: string[] = [];
  let source: { repo: string; commit: string };

  async function newHome(): Promise<{ home: string; env: Record<string, string> }> {
    const home = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-devsup-'));
    homes.push(home);
    const env = {
      EXPCTL_HOME: home,
      EXPCTL_HOST: 'devsup',
      EXPCTL_TEMPORAL_PORT: String(await freePort()),
      EXPCTL_UI_PORT: String(await freePort()),
      TEMPORAL_CLI: inject('temporalCli'),
      TEMPORAL_ADDRESS: '',
      // Two fake L4s, the same on every machine.
      PATH: `${path.join(FIXTURES, 'bin')}${path.delimiter}${process.env.PATH}`,
      FAKE_NVIDIA_SMI_FLEET: path.join(FIXTURES, 'fleets', 'two-l4.csv'),
    };
    return { home, env };
  }

  function startDev(env: Record<string, string>, ...args: string[]): DevProcess {
    // forceKillAfterDelay: false — a SIGTERM must not turn into execa's SIGKILL 5 s later.
    const child = execa(process.execPath, [EXPCTL, 'dev', ...args], {
      env,
      reject: false,
      all: true,
      buffer: { all: true },
      forceKillAfterDelay: false,
    });
    started.push(child);
    let output = '';
    child.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    return {
      child,
      output: () => output,
      // On a timeout the stack's own output says where it stood.
      waitForOutput: (text, timeoutMs = 120_000) =>
        waitFor(async () => output.includes(text), timeoutMs).catch((error: Error) => {
          throw new Error(`${error.message} waiting for "${text}"; expctl dev printed:\n${output.slice(-4000)}`);
        }),
    };
  }

  /** A client of the stack at `address` for one piece of work (the test run's keyring, EXPCTL_KEY_FILE, inherited). */
  async function withClient<T>(address: string, work: (client: Client) => Promise<T>): Promise<T> {
    const connection = await Connection.connect({ address });
    try {
      return await work(new Client({ connection, namespace: 'default', dataConverter: await dataConverter() }));
    } finally {
      await connection.close();
    }
  }

  /** Submits a run to the stack at `address` as its admin (the credential `expctl dev` made) and waits for its result. */
  const runOn = (home: string, address: string, metric: string) =>
    withClient(address, async (client) => {
      const { handle } = await submitExperiment(
        client,
        {
          tag: 'devsup',
          hypothesis: `metric ${metric}`,
          category: 'other',
          command: ['python3', 'train.py'],
          repo: source.repo,
          commit: source.commit,
          timeBudgetSeconds: 60,
          env: { VAL_BPB: metric },
        },
        { credential: loadCredential({ EXPCTL_HOME: home }) },
      );
      const result = await handle.result();
      // Printed so that a failure says why the run ended as it did (the assertion shows status only).
      if (result.status !== 'completed') console.log(`run ${metric} ended ${result.status}: ${result.reason}`);
      return result;
    });

  /** What the pool says of `host`'s registration. */
  const registrationOn = (address: string, host: string) =>
    withClient(address, (client) => client.workflow.getHandle(POOL_WORKFLOW_ID).query(hostRegistrationQuery, host));

  beforeAll(async () => {
    source = await makeRepo();
  });

  afterAll(async () => {
    for (const child of started) child.kill('SIGKILL');
    await Promise.allSettled(started);
    for (const home of homes) {
      // A server orphaned by a failed test must not outlive it.
      for (const line of await serversOn(home)) process.kill(Number(line.split(':')[0]), 'SIGKILL');
      await fs.rm(home, { recursive: true, force: true });
    }
    await fs.rm(source.repo, { recursive: true, force: true });
  });

  it(
    'restarts a killed server, waits out a frozen one, and completes runs after both; after a SIGKILL of expctl dev the next start stops the orphan',
    { timeout: 420_000 },
    async () => {
      const { home, env } = await newHome();
      const address = `127.0.0.1:${env.EXPCTL_TEMPORAL_PORT}`;
      const first = startDev(env, '--no-demo');
      await first.waitForOutput('expctl dev is up');
      // "Up" means a run submitted now is placed: the pool already holds this host.
      expect(await registrationOn(address, 'devsup')).toMatchObject({ online: true, refusal: null });

      // kill -9 the server: the stack restarts it on the same database and ports.
      const killed = (await serverPid(home))!;
      process.kill(killed, 'SIGKILL');
      await first.waitForOutput('the Temporal server is back');
      expect(first.output()).toMatch(
        /the Temporal server exited \(killed by SIGKILL\); restarting it on the same database/,
      );
      const restarted = (await serverPid(home))!;
      expect(restarted).not.toBe(killed);
      expect(await serversOn(home)).toHaveLength(1);
      expect(await runOn(home, address, '1.500000')).toMatchObject({ status: 'completed', metric: 1.5 });

      // Freeze it for longer than the old give-up window: nothing is decided, nothing stops.
      process.kill(restarted, 'SIGSTOP');
      try {
        const frozenUntil = Date.now() + FREEZE_MS;
        while (Date.now() < frozenUntil) {
          expect(first.child.exitCode).toBeNull();
          await new Promise((r) => setTimeout(r, 1000)); // the freeze itself is the stimulus
        }
      } finally {
        process.kill(restarted, 'SIGCONT');
      }
      expect(first.output()).not.toContain('stopping');
      expect(await serverPid(home)).toBe(restarted);
      expect(await runOn(home, address, '1.400000')).toMatchObject({ status: 'completed', metric: 1.4 });

      // SIGKILL of expctl dev orphans its server; the next start finds it by its pid file and stops it.
      first.child.kill('SIGKILL');
      await first.child;
      expect(processAlive(restarted)).toBe(true);
      const second = startDev(env, '--no-demo');
      await second.waitForOutput('expctl dev is up');
      expect(second.output()).toContain(`stopping the Temporal server (pid ${restarted}) left running`);
      expect(second.output()).not.toMatch(/in use/);
      expect(processAlive(restarted)).toBe(false);
      expect(await serversOn(home)).toHaveLength(1);
      expect(await runOn(home, address, '1.300000')).toMatchObject({ status: 'completed', metric: 1.3 });

      second.child.kill('SIGTERM');
      expect((await second.child).exitCode).toBe(0);
      expect(await processesUsing(home)).toEqual([]);
      expect(await fs.readdir(home)).not.toContain('temporal.pid.json');
      expect(await fs.readdir(home)).not.toContain('dev.json');
    },
  );

  const startupMoments: [string, (home: string, dev: DevProcess) => Promise<void>][] = [
    ['as soon as it holds the state lock', (home) => waitFor(() => fileExists(path.join(home, 'dev.json')), 60_000)],
    ['while the server starts', async (home) => void (await eventually(() => serverPid(home), 60_000))],
    ['while the workers start', (_home, dev) => dev.waitForOutput('starting the orchestrator and the GPU worker')],
    ['during the demo campaign', (_home, dev) => dev.waitForOutput('Example campaign')],
  ];
  it.each(startupMoments)(
    'SIGTERM %s: exits 0 and leaves no process and no pid file',
    { timeout: 180_000 },
    async (_moment, reached) => {
      const { home, env } = await newHome();
      const dev = startDev(env);
      await reached(home, dev);
      dev.child.kill('SIGTERM');
      const exit = await dev.child;
      expect({ exitCode: exit.exitCode, signal: exit.signal }, dev.output()).toEqual({
        exitCode: 0,
        signal: undefined,
      });
      expect(await processesUsing(home)).toEqual([]);
      const left = await fs.readdir(home);
      expect(left).not.toContain('dev.json');
      expect(left).not.toContain('temporal.pid.json');
    },
  );
});
