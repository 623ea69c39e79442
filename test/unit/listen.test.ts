import net from 'node:net';
import type os from 'node:os';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/shared/ports.js';
import { forwardToLoopback } from '../../src/temporal/forward.js';
import { hostPort, listenPlan } from '../../src/temporal/listen.js';

const entry = (address: string, internal = false, family: 'IPv4' | 'IPv6' = 'IPv4') =>
  ({ address, internal, family, netmask: '', mac: '', cidr: null }) as os.NetworkInterfaceInfo;
const interfaces = {
  lo: [entry('127.0.0.1', true), entry('::1', true, 'IPv6')],
  eth0: [entry('fd00::2', false, 'IPv6'), entry('192.0.2.2')],
};

describe('expctl dev --listen', () => {
  it('serves loopback only by default, and says other hosts cannot connect', () => {
    expect(listenPlan(undefined, interfaces, 'node')).toEqual({
      serverIp: '127.0.0.1',
      forwardIp: null,
      advertised: null,
    });
    expect(listenPlan('localhost', interfaces, 'node').serverIp).toBe('127.0.0.1');
  });

  it('serves one address of this host through a forwarder, since the dev server cannot bind it itself', () => {
    expect(listenPlan('192.0.2.2', interfaces, 'node')).toEqual({
      serverIp: '127.0.0.1',
      forwardIp: '192.0.2.2',
      advertised: '192.0.2.2',
    });
  });

  it('serves every address with 0.0.0.0 and gives out the first external IPv4 address, else the hostname', () => {
    expect(listenPlan('0.0.0.0', interfaces, 'node')).toEqual({
      serverIp: '0.0.0.0',
      forwardIp: null,
      advertised: '192.0.2.2',
    });
    expect(listenPlan('0.0.0.0', { lo: interfaces.lo }, 'node').advertised).toBe('node');
  });

  it('refuses an address this host does not have, and a name, before anything starts', () => {
    expect(() => listenPlan('10.9.9.9', interfaces, 'node')).toThrow(
      /no network interface of this host has that address/,
    );
    expect(() => listenPlan('node.example', interfaces, 'node')).toThrow(/expected an IP address of this host/);
  });

  it('writes IPv6 addresses with brackets', () => {
    expect(hostPort('fd00::2', 7233)).toBe('[fd00::2]:7233');
    expect(hostPort('192.0.2.2', 7233)).toBe('192.0.2.2:7233');
  });
});

describe('the loopback forwarder', () => {
  it('joins a connection on another address to the loopback port, both ways, and closes cleanly', async () => {
    const echo = net.createServer((socket) => socket.pipe(socket));
    const target = await freePort();
    await new Promise<void>((resolve) => echo.listen(target, '127.0.0.1', resolve));
    const port = await freePort('127.0.0.2');
    const forwarder = await forwardToLoopback('127.0.0.2', port, target);
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const client = net.connect({ host: '127.0.0.2', port }, () => client.write('ping through the forwarder'));
        client.on('data', (data) => {
          resolve(data.toString());
          client.end();
        });
        client.on('error', reject);
      });
      expect(reply).toBe('ping through the forwarder');
    } finally {
      await forwarder.close();
      await new Promise<void>((resolve) => echo.close(() => resolve()));
    }
    // Closed: nothing listens there any more.
    await expect(
      new Promise((resolve, reject) => {
        const client = net.connect({ host: '127.0.0.2', port }, () => resolve(client.end()));
        client.on('error', reject);
      }),
    ).rejects.toThrow(/ECONNREFUSED/);
  });
});
