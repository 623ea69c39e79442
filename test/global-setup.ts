import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { freePort, startDevServer, type DevServer } from '../src/temporal/dev-server.js';
import { ensureTemporalCli } from '../src/temporal/temporal-cli.js';

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalCli: string;
  }
}

let server: DevServer | undefined;
let dir: string | undefined;

/** One real Temporal dev server for the whole run, on free ports, with its own SQLite file. */
export async function setup(project: TestProject): Promise<void> {
  const binary = await ensureTemporalCli();
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-test-temporal-'));
  server = await startDevServer({
    binary,
    dbFile: path.join(dir, 'temporal.db'),
    ip: '127.0.0.1',
    grpcPort: await freePort(),
    uiPort: await freePort(),
    logFile: path.join(dir, 'temporal.log'),
  });
  project.provide('temporalAddress', server.address);
  project.provide('temporalCli', binary);
}

export async function teardown(): Promise<void> {
  await server?.stop();
  if (dir) await fs.rm(dir, { recursive: true, force: true });
}
