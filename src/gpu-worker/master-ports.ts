import { freePort } from '../shared/ports.js';

/**
 * The MASTER_PORT of each live run of this host (one allocator per worker process, shared by its
 * slots, like the host's run registry): a port the system calls free now, and never one another live
 * run of the host holds, so two multi-GPU runs on one host never rendezvous on the same port.
 */
export class MasterPorts {
  private readonly held = new Set<number>();

  /** A free port for a new run, held until released. */
  async reserve(): Promise<number> {
    for (let tries = 0; tries < 50; tries++) {
      const port = await freePort();
      if (this.held.has(port)) continue;
      this.held.add(port);
      return port;
    }
    throw new Error('no free TCP port for MASTER_PORT after 50 tries');
  }

  /** A re-attached run keeps the port it was started with. */
  hold(port: number): void {
    this.held.add(port);
  }

  release(port: number): void {
    this.held.delete(port);
  }

  has(port: number): boolean {
    return this.held.has(port);
  }
}
