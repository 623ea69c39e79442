import net from 'node:net';
import type os from 'node:os';

/**
 * Where `expctl dev` serves Temporal, and what it tells other hosts. The dev server's own `--ip`
 * binds its internal services to that address too but still dials them on 127.0.0.1, so it dies
 * on any other single address. So the server binds loopback (or every address, for 0.0.0.0), and
 * a specific address is served by a TCP forwarder onto loopback.
 */
export interface ListenPlan {
  /** What the dev server itself binds. */
  serverIp: string;
  /** The address a forwarder listens on (onto the server's loopback ports), or null. */
  forwardIp: string | null;
  /** The address to give other hosts (TEMPORAL_ADDRESS=<advertised>:<port>), or null when only this host can connect. */
  advertised: string | null;
}

const isLoopback = (ip: string) => ip === 'localhost' || ip === '::1' || /^127\./.test(ip);
const isAny = (ip: string) => ip === '0.0.0.0' || ip === '::';

/** The plan for `--listen ADDR` (EXPCTL_TEMPORAL_IP), given this host's interfaces. */
export function listenPlan(
  listen: string | undefined,
  interfaces: ReturnType<typeof os.networkInterfaces>,
  hostname: string,
): ListenPlan {
  if (listen === undefined || listen === '' || isLoopback(listen))
    return { serverIp: listen && listen !== 'localhost' ? listen : '127.0.0.1', forwardIp: null, advertised: null };
  if (isAny(listen)) {
    // Every address: the first external IPv4 address is the one to give out, else the hostname.
    const external = Object.values(interfaces)
      .flat()
      .find((entry) => entry && !entry.internal && entry.family === 'IPv4');
    return { serverIp: '0.0.0.0', forwardIp: null, advertised: external?.address ?? hostname };
  }
  if (net.isIP(listen) === 0)
    throw new Error(
      `--listen ${JSON.stringify(listen)}: expected an IP address of this host, or 0.0.0.0 for all of them`,
    );
  const own = Object.values(interfaces)
    .flat()
    .some((entry) => entry?.address === listen);
  if (!own) throw new Error(`--listen ${listen}: no network interface of this host has that address`);
  return { serverIp: '127.0.0.1', forwardIp: listen, advertised: listen };
}

/** host:port, with brackets for an IPv6 address. */
export function hostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
