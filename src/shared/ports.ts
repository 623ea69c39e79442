import net from 'node:net';

/** True when nothing listens on `ip:port` right now (an exclusive probe bind succeeds). */
export async function isPortFree(port: number, ip: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createServer();
    probe.once('error', () => resolve(false));
    probe.listen({ port, host: ip, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

/** A port free right now: the kernel picks one for a probe socket, which is closed again. */
export async function freePort(ip = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen({ port: 0, host: ip }, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
