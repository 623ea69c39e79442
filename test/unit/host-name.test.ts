import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { hostName } from '../../src/shared/settings.js';

const MACHINE_A = '0123456789abcdef0123456789abcdef';
const MACHINE_B = 'fedcba9876543210fedcba9876543210';

describe("a host's name in the fleet", () => {
  it('is unique by default: two machines with one hostname (cloned VMs, containers) get different names', () => {
    const a = hostName({}, () => MACHINE_A);
    const b = hostName({}, () => MACHINE_B);
    expect(a).not.toBe(b);
    expect(a).toMatch(new RegExp(`^${os.hostname().replace(/[^A-Za-z0-9_.-]/g, '-')}-[0-9a-f]{8}$`));
    // Stable: the same machine always gets the same name, so a restarted worker finds its runs.
    expect(hostName({}, () => MACHINE_A)).toBe(a);
    // The machine id itself is not shown.
    expect(a).not.toContain(MACHINE_A.slice(0, 8));
  });

  it('is the hostname alone where the machine has no id, and EXPCTL_HOST where one is set', () => {
    expect(hostName({}, () => null)).toBe(os.hostname().replace(/[^A-Za-z0-9_.-]/g, '-'));
    expect(hostName({ EXPCTL_HOST: 'gpu node/7' }, () => MACHINE_A)).toBe('gpu-node-7');
  });
});
