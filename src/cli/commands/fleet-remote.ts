import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { refUpdateRefusal } from '../../domain/fleet-remote.js';
import { PRIVATE_DIR_MODE } from '../../security/files.js';
import { stateDir } from '../../shared/settings.js';
import { CliError } from '../output.js';

const EXPCTL = fileURLToPath(new URL('../../../bin/expctl.js', import.meta.url));
const DEFAULT_GIT_PORT = 9418;

/**
 * The served bare repository, with a pre-receive hook that lets a push only add
 * refs/expctl/commits/<sha> naming <sha>: nothing is moved or deleted, whoever can reach the port.
 */
export async function prepareServedRepository(dir: string): Promise<void> {
  await fs.mkdir(path.dirname(dir), { recursive: true, mode: PRIVATE_DIR_MODE });
  try {
    await fs.access(path.join(dir, 'HEAD'));
  } catch {
    await execa('git', ['init', '--quiet', '--bare', dir]);
  }
  const settings: [string, string][] = [
    ['receive.denyDeletes', 'true'],
    ['receive.denyNonFastForwards', 'true'],
    ['receive.fsckObjects', 'true'],
    // Workers fetch a commit by SHA when its ref is gone (the hook keeps refs; this is a backstop).
    ['uploadpack.allowAnySHA1InWant', 'true'],
  ];
  for (const [key, value] of settings) await execa('git', ['-C', dir, 'config', key, value]);
  // Written at every start: it names this expctl's node and entry point.
  const hook = `#!/bin/sh\nexec '${process.execPath}' '${EXPCTL}' fleet-remote check-push\n`;
  await fs.writeFile(path.join(dir, 'hooks', 'pre-receive'), hook, { mode: 0o700 });
}

/** `expctl fleet-remote serve`: the fleet's git remote, served by `git daemon` until SIGINT/SIGTERM. */
export async function fleetRemoteServeCommand(options: { listen?: string; port?: number; dir?: string }) {
  const dir = path.resolve(options.dir ?? path.join(stateDir(), 'git', 'fleet.git'));
  const listen = options.listen ?? '127.0.0.1';
  const port = options.port ?? DEFAULT_GIT_PORT;
  await prepareServedRepository(dir);
  const daemon = execa(
    'git',
    [
      'daemon',
      '--reuseaddr',
      '--informative-errors',
      '--export-all',
      '--enable=receive-pack',
      `--base-path=${path.dirname(dir)}`,
      `--listen=${listen}`,
      `--port=${port}`,
      path.dirname(dir),
    ],
    { stdio: ['ignore', 'inherit', 'inherit'], reject: false },
  );
  const stop = () => daemon.kill('SIGTERM');
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const shown = listen === '0.0.0.0' ? '<this host>' : listen.includes(':') ? `[${listen}]` : listen;
  console.error(`expctl fleet-remote: serving ${dir}`);
  console.error(`  Submitting hosts: EXPCTL_FLEET_REMOTE=git://${shown}:${port}/${path.basename(dir)}`);
  const exit = await daemon;
  if (exit.exitCode !== 0 && !exit.isTerminated)
    throw new CliError(`git daemon exited ${exit.exitCode} (is port ${port} on ${listen} free?)`);
}

/** The served repository's pre-receive hook: refuses every ref update but a new shipped commit. */
export async function fleetRemoteCheckPushCommand(): Promise<void> {
  let input = '';
  for await (const chunk of process.stdin) input += String(chunk);
  const refusals = input
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => {
      const [oldSha, newSha, ref] = line.trim().split(' ') as [string, string, string];
      return refUpdateRefusal(ref, oldSha, newSha);
    })
    .filter((refusal): refusal is string => refusal !== null);
  if (refusals.length > 0) throw new CliError(`the fleet remote refuses this push: ${refusals.join('; ')}`);
}
