import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { refUpdateRefusal } from '../../domain/fleet-remote.js';
import { PRIVATE_DIR_MODE } from '../../security/files.js';
import { fleetRemoteDir, gitPort } from '../../shared/settings.js';
import { listenPlan } from '../../temporal/listen.js';
import { CliError } from '../output.js';

const EXPCTL = fileURLToPath(new URL('../../../bin/expctl.js', import.meta.url));

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

export interface ServedRemote {
  /** What submitting hosts set EXPCTL_FLEET_REMOTE to. */
  url: string;
  dir: string;
  exited: Promise<{ exitCode?: number; isTerminated: boolean; stderr?: string }>;
  stop(): Promise<void>;
}

/**
 * Serves the fleet remote with `git daemon` on `listen`:`port` and resolves once it answers
 * (`git ls-remote`), or rejects with git's own words when it cannot serve (the port is taken).
 */
export async function startFleetRemote(options: {
  dir: string;
  listen: string;
  port: number;
  /** The address other hosts use, where `listen` is 0.0.0.0. */
  advertised?: string;
}): Promise<ServedRemote> {
  await prepareServedRepository(options.dir);
  const daemon = execa(
    'git',
    [
      'daemon',
      '--reuseaddr',
      '--informative-errors',
      '--export-all',
      '--enable=receive-pack',
      `--base-path=${path.dirname(options.dir)}`,
      `--listen=${options.listen}`,
      `--port=${options.port}`,
      path.dirname(options.dir),
    ],
    { stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', reject: false },
  );
  const host = (address: string) => (address.includes(':') ? `[${address}]` : address);
  const local = options.listen === '0.0.0.0' ? '127.0.0.1' : options.listen;
  const probe = `git://${host(local)}:${options.port}/${path.basename(options.dir)}`;
  let exited = false;
  void daemon.finally(() => (exited = true));
  const deadline = Date.now() + 30_000;
  for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
    if (exited || Date.now() > deadline) {
      daemon.kill('SIGTERM');
      const result = await daemon;
      const said = String(result.stderr ?? '').trim();
      throw new CliError(
        `could not serve the fleet remote on ${options.listen}:${options.port}: ${said || 'git daemon did not answer within 30 s'}`,
      );
    }
    const answered = await execa('git', ['ls-remote', probe], { reject: false, timeout: 5000 });
    if (answered.exitCode === 0) break;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
  return {
    url: `git://${host(options.advertised ?? options.listen)}:${options.port}/${path.basename(options.dir)}`,
    dir: options.dir,
    exited: daemon,
    async stop() {
      daemon.kill('SIGTERM');
      await daemon;
    },
  };
}

/** `expctl fleet-remote serve`: the fleet's git remote, served by `git daemon` until SIGINT/SIGTERM. */
export async function fleetRemoteServeCommand(options: { listen?: string; port?: number; dir?: string }) {
  // The same rule as `expctl dev --listen`: an address of this host, or all of them.
  let plan;
  try {
    plan = listenPlan(options.listen, os.networkInterfaces(), os.hostname());
  } catch (error) {
    throw new CliError((error as Error).message);
  }
  const served = await startFleetRemote({
    dir: path.resolve(options.dir ?? fleetRemoteDir()),
    listen: plan.forwardIp ?? plan.serverIp,
    port: options.port ?? gitPort(),
    ...(plan.advertised ? { advertised: plan.advertised } : {}),
  });
  const stop = () => void served.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  console.error(`expctl fleet-remote: serving ${served.dir}`);
  console.error(`  Submitting hosts: EXPCTL_FLEET_REMOTE=${served.url}`);
  const exit = await served.exited;
  if (exit.exitCode !== 0 && !exit.isTerminated)
    throw new CliError(`git daemon exited ${exit.exitCode}: ${String(exit.stderr ?? '').trim()}`);
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
