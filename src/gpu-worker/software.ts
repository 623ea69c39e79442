import { execa } from 'execa';

/** Interpreter and runtime versions a host offers, recorded with its registration. */
export async function softwareVersions(): Promise<Record<string, string>> {
  const versions: Record<string, string> = { node: process.version };
  for (const [name, command, args] of [
    ['python3', 'python3', ['--version']],
    ['uv', 'uv', ['--version']],
    ['git', 'git', ['--version']],
  ] as const) {
    try {
      const { stdout, stderr } = await execa(command, args, { timeout: 10_000 });
      versions[name] = (stdout || stderr).trim().split('\n')[0]!;
    } catch {
      // not installed on this host
    }
  }
  return versions;
}
