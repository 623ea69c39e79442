import crypto from 'node:crypto';
import { execa, type Options } from 'execa';

/**
 * Hosts as Linux network namespaces on one bridge: each host has its own network stack (eth0 with
 * 10.231.<net>.<n>/24 and its own loopback), the bridge lives in a switch namespace of its own so
 * the machine's namespace is never touched, and cutting a host's link is one `ip link set down`.
 */
export interface NamespaceHost {
  name: string;
  /** The network namespace the host's processes run in. */
  namespace: string;
  address: string;
  /** The host's port on the bridge (in the switch namespace). */
  switchPort: string;
}

export interface NamespaceNetwork {
  hosts: Record<string, NamespaceHost>;
  /** argv that runs `argv` in the host's network namespace. */
  inHost(host: string, argv: string[]): string[];
  /** Takes the host's link down (the host stays up, it just cannot reach anyone) or back up. */
  setLink(host: string, up: boolean): Promise<void>;
  destroy(): Promise<void>;
}

const ip = (args: string[], options: Options = {}) => execa('ip', args, { timeout: 20_000, ...options });

/** Null when this machine lets the tests make network namespaces; otherwise why not. */
export async function namespacesUnavailable(): Promise<string | null> {
  const probe = `exprobe${crypto.randomBytes(3).toString('hex')}`;
  const added = await ip(['netns', 'add', probe], { reject: false });
  if (added.exitCode !== 0)
    return `network namespaces are not permitted here (ip netns add: ${String(added.stderr).trim() || `exit ${added.exitCode}`})`;
  await ip(['netns', 'del', probe], { reject: false });
  const mount = await execa('unshare', ['--mount', '--propagation', 'private', 'true'], { reject: false });
  if (mount.exitCode !== 0)
    return `mount namespaces are not permitted here (unshare --mount: ${String(mount.stderr).trim()})`;
  return null;
}

/** Makes `names.length` hosts on a fresh /24; the first is .1, the next .2, and so on. */
export async function createNamespaceNetwork(names: string[]): Promise<NamespaceNetwork> {
  const id = crypto.randomBytes(2).toString('hex');
  const net = 200 + (parseInt(id, 16) % 50);
  const switchNs = `exsw${id}`;
  const hosts: Record<string, NamespaceHost> = {};
  const made: string[] = [];
  const destroy = async () => {
    for (const namespace of made.reverse()) await ip(['netns', 'del', namespace], { reject: false });
  };
  try {
    await ip(['netns', 'add', switchNs]);
    made.push(switchNs);
    await ip(['-n', switchNs, 'link', 'set', 'lo', 'up']);
    await ip(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await ip(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    for (const [index, name] of names.entries()) {
      const namespace = `exh${id}${index}`;
      // Interface names are at most 15 characters.
      const hostSide = `vh${id}${index}`;
      const switchPort = `vs${id}${index}`;
      const address = `10.231.${net}.${index + 1}`;
      await ip(['netns', 'add', namespace]);
      made.push(namespace);
      await ip([
        '-n',
        namespace,
        'link',
        'add',
        hostSide,
        'type',
        'veth',
        'peer',
        'name',
        switchPort,
        'netns',
        switchNs,
      ]);
      await ip(['-n', switchNs, 'link', 'set', switchPort, 'master', 'br0']);
      await ip(['-n', switchNs, 'link', 'set', switchPort, 'up']);
      await ip(['-n', namespace, 'link', 'set', 'lo', 'up']);
      await ip(['-n', namespace, 'addr', 'add', `${address}/24`, 'dev', hostSide]);
      await ip(['-n', namespace, 'link', 'set', hostSide, 'up']);
      hosts[name] = { name, namespace, address, switchPort };
    }
  } catch (error) {
    await destroy();
    throw error;
  }
  return {
    hosts,
    inHost: (host, argv) => ['ip', 'netns', 'exec', hosts[host]!.namespace, ...argv],
    setLink: async (host, up) => {
      await ip(['-n', switchNs, 'link', 'set', hosts[host]!.switchPort, up ? 'up' : 'down']);
    },
    destroy,
  };
}

/**
 * argv that runs `argv` with `hidden` covered by an empty tmpfs, in a mount namespace of its own:
 * the process sees none of what is there (the control host's repository and state).
 */
export function withHidden(hidden: string[], argv: string[]): string[] {
  const mounts = hidden.map((dir) => `mount -t tmpfs -o size=1m tmpfs '${dir.replaceAll("'", "'\\''")}'`).join(' && ');
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', `${mounts} && exec "$@"`, 'sh', ...argv];
}
