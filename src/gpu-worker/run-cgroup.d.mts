/** A run's cgroup: one directory per hierarchy; `freezer` is the one that freezes it (if any). */
export interface RunCgroup {
  version: 1 | 2;
  dirs: string[];
  freezer: string | null;
}

export function cgroupMembers(dirs: string[]): Promise<number[]>;
export function killCgroup(
  cgroup: RunCgroup,
  options?: { except?: number | null; timeoutMs?: number },
): Promise<boolean>;
export function removeCgroup(cgroup: RunCgroup): Promise<boolean>;
