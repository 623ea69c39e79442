import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { execa, type ResultPromise } from 'execa';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { POOL_WORKFLOW_ID } from '../../src/shared/constants.js';
import { readStackPointer, stackPointerPath } from '../../src/shared/stack.js';
import { dataConverter } from '../../src/temporal/connection.js';
import { freePort } from '../../src/shared/ports.js';
import { poolStateQuery } from '../../src/workflows/definitions.js';
import { HEALTH_SCHEDULE_ID } from '../../src/workflows/health.js';
import { openToOthers } from '../helpers/files.js';
import { processesUsing } from '../helpers/processes.js';
import { FIXTURES } from '../helpers/stack.js';
import { eventually } from '../helpers/wait.js';

const EXPCTL = fileURLToPath(new URL('../../bin/expctl.js', import.meta.url));

describe('expctl dev (npm start)', () => {
  const started: ResultPromise[] = [];
  let home: string;
  afterAll(async () => {
    for (const child of started) child.kill('SIGKILL');
    if (home) await fs.rm(home, { recursive: true, force: true });
  });

  it(
    'brings up server, Web UI, workers and a health Schedule that drains a hot GPU; refuses a second start; Ctrl-C or a closed terminal leaves nothing; state survives',
    { timeout: 240_000 },
    async () => {
      home = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-dev-'));
      const grpcPort = await freePort();
      const uiPort = await freePort();
      // The local worker sees two fake L4s; GPU 1 reports a critical temperature.
      const fleet = path.join(home, 'fleet.csv');
      await fs.writeFile(
        fleet,
        (await fs.readFile(path.join(FIXTURES, 'fleets', 'two-l4.csv'), 'utf8')).replace(
          /^(1, (?:[^,]*, ){5})\d+/m,
          '$195',
        ),
        { mode: 0o600 }, // in the state directory, whose modes are checked below
      );
      const env = {
        EXPCTL_HOME: home,
        EXPCTL_HOST: 'devhost',
        EXPCTL_TEMPORAL_PORT: String(grpcPort),
        EXPCTL_UI_PORT: String(uiPort),
        TEMPORAL_CLI: inject('temporalCli'),
        TEMPORAL_ADDRESS: '',
        PATH: `${path.join(FIXTURES, 'bin')}${path.delimiter}${process.env.PATH}`,
        FAKE_NVIDIA_SMI_FLEET: fleet,
        // Not the test run's keyring: the stack makes its own on the first start.
        EXPCTL_KEY_FILE: '',
      };
      const start = () => {
        // forceKillAfterDelay: false — execa would otherwise SIGKILL a stack that takes over 5 s to stop.
        const child = execa(process.execPath, [EXPCTL, 'dev', '--no-demo'], {
          env,
          reject: false,
          all: true,
          buffer: { all: true },
          forceKillAfterDelay: false,
          // A process group of its own, as a terminal gives it: Ctrl-C signals the whole group.
          detached: true,
        });
        started.push(child);
        let output = '';
        child.all!.on('data', (chunk: Buffer) => (output += chunk.toString()));
        return { child, output: () => output };
      };

      const first = start();
      await eventually(async () => (first.output().includes('expctl dev is up') ? true : undefined), 120_000);
      expect(first.output()).toContain(`Temporal Web UI:  http://localhost:${uiPort}`);
      expect((await fetch(`http://127.0.0.1:${uiPort}`)).status).toBe(200);
      // The codec endpoint for the UI: token in its path, CORS for the UI's origin.
      const endpoint = /Codec endpoint:\s+(\S+)/.exec(first.output())?.[1];
      expect(endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/[A-Za-z0-9_-]{43}$/);
      const decoded = await fetch(`${endpoint}/decode`, {
        method: 'POST',
        headers: { Origin: `http://localhost:${uiPort}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ payloads: [] }),
      });
      expect(decoded.status).toBe(200);
      expect(decoded.headers.get('access-control-allow-origin')).toBe(`http://localhost:${uiPort}`);

      expect(first.output()).toContain('created the payload keyring');
      const keyFile = path.join(home, 'keys', 'payload-keys.json');
      expect((await fs.stat(keyFile)).mode & 0o777).toBe(0o600);
      const converter = await dataConverter({ EXPCTL_HOME: home });
      const connection = await Connection.connect({ address: `127.0.0.1:${grpcPort}` });
      const client = new Client({ connection, dataConverter: converter });
      const schedule = await client.schedule.getHandle(HEALTH_SCHEDULE_ID).describe();
      expect(schedule.spec.intervals?.[0]?.every).toBe(60_000);
      await client.schedule.getHandle(HEALTH_SCHEDULE_ID).trigger();
      const pool = await eventually(async () => {
        const state = await client.workflow.getHandle(POOL_WORKFLOW_ID).query(poolStateQuery);
        return state.health.devhost ? state : undefined;
      }, 60_000);
      expect(pool.health.devhost?.report.slotIds).toEqual(['devhost/gpu0', 'devhost/gpu1']);
      expect(pool.slots.map((s) => [s.slot.slotId, s.draining, s.drainReason])).toEqual([
        ['devhost/gpu0', false, null],
        ['devhost/gpu1', true, 'health: temperature 95 C >= 90 C'],
      ]);

      const second = await execa(process.execPath, [EXPCTL, 'dev', '--no-demo'], { env, reject: false });
      expect(second.exitCode).toBe(0);
      expect(second.stdout).toMatch(/expctl dev is already running \(pid \d+\)/);

      // The stack pointer names it for every command of this user, from any directory (0600).
      const pointerFile = stackPointerPath();
      expect(first.output()).toContain(`finds this stack (recorded in ${pointerFile})`);
      expect((await fs.stat(pointerFile)).mode & 0o777).toBe(0o600);
      expect(readStackPointer()).toMatchObject({
        pid: first.child.pid,
        home,
        address: `127.0.0.1:${grpcPort}`,
        namespace: 'default',
        keyFile,
        catalog: path.join(home, 'catalog.sqlite'),
        codecEndpoint: endpoint,
      });
      const elsewhere = await execa(process.execPath, [EXPCTL, 'dev', '--no-demo'], {
        env: { ...env, EXPCTL_HOME: '' },
        cwd: os.tmpdir(),
        reject: false,
      });
      expect(elsewhere.stdout).toContain(`expctl dev is already running (pid ${first.child.pid}) for ${home}`);

      // Ctrl-C: SIGINT to the terminal's process group, the server included. The server is stopped
      // last all the same: the workers deregister through it (no "shutdown_worker rpc errored").
      process.kill(-first.child.pid!, 'SIGINT');
      const exit = await first.child;
      expect(exit.exitCode).toBe(0);
      expect(first.output()).toContain('expctl: stopped; state kept for the next start.');
      await expect(fs.stat(pointerFile)).rejects.toThrow(/ENOENT/);
      expect(first.output()).not.toMatch(/WARN|errored/);
      expect(await processesUsing(home)).toEqual([]);
      await connection.close();

      // State, server database, logs, worker directory, catalog, keys: private to this user.
      expect(await openToOthers(home)).toEqual([]);

      const again = start();
      await eventually(async () => (again.output().includes('expctl dev is up') ? true : undefined), 120_000);
      expect(again.output()).not.toContain('created the payload keyring');
      const reconnected = await Connection.connect({ address: `127.0.0.1:${grpcPort}` });
      const count = await new Client({ connection: reconnected, dataConverter: converter }).workflow.count(
        `WorkflowType = 'healthCheckWorkflow'`,
      );
      expect(count.count).toBeGreaterThanOrEqual(1);
      await reconnected.close();
      // The terminal closed: SIGHUP stops it as Ctrl-C does (the server, in a group of its own, too).
      again.child.kill('SIGHUP');
      expect((await again.child).exitCode).toBe(0);
      expect(again.output()).toContain('expctl: stopped; state kept for the next start.');
      expect(await processesUsing(home)).toEqual([]);
    },
  );
});
