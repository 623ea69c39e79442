import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inject } from 'vitest';
import { freePort } from '../../src/shared/ports.js';
import { startDevServer, type DevServer } from '../../src/temporal/dev-server.js';

/**
 * A Temporal dev server of one test file's own (the shared one must stay up), which the test can
 * stop and start again on the same database and port: an outage, as the workers see one.
 */
export class OwnServer {
  server: DevServer | undefined;
  /** The server's address, kept while it is down. */
  address = '';

  private constructor(
    readonly dir: string,
    private readonly options: Parameters<typeof startDevServer>[0],
  ) {}

  static async start(name: string): Promise<OwnServer> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `expctl-${name}-`));
    const own = new OwnServer(dir, {
      binary: inject('temporalCli'),
      dbFile: path.join(dir, 'temporal.db'),
      ip: '127.0.0.1',
      grpcPort: await freePort(),
      uiPort: await freePort(),
      logFile: path.join(dir, 'temporal.log'),
    });
    await own.up();
    return own;
  }

  async up(): Promise<void> {
    this.server = await startDevServer(this.options);
    this.address = this.server.address;
  }

  async down(): Promise<void> {
    await this.server?.stop();
    this.server = undefined;
  }

  /** Stops the server and removes its files. */
  async remove(): Promise<void> {
    await this.down();
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}
