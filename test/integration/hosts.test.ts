/**
 * Three hosts that share nothing but the network: network namespaces on one bridge, the control
 * host's files hidden from the GPU hosts by a tmpfs in their own mount namespaces. The control host
 * runs `expctl dev --listen` (Temporal, orchestrator, catalog, fleet git remote); hosts a and b run
 * `expctl worker` with different fake fleets. The set-up and the second test follow the operating
 * guide's "Several hosts" block line by line. Skipped, saying why, where namespaces are not permitted.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPCTL } from '../helpers/cli.js';
import { createNamespaceNetwork, namespacesUnavailable, withHidden, type NamespaceNetwork } from '../helpers/netns.js';
import { processesUsing } from '../helpers/processes.js';
import { commitAll } from '../helpers/repo.js';
import { FIXTURES } from '../helpers/stack.js';
import { eventually } from '../helpers/wait.js';

const unavailable = await namespacesUnavailable();
if (unavailable) console.warn(`expctl tests: the multi-host test is SKIPPED: ${unavailable}`);

let dir: string;
let network: NamespaceNetwork;
const processes: ResultPromise[] = [];
const outputs = new Map<string, string>();
let controlDir: string;
let control: string;
let tag: string;
/** The payload keyring as `expctl keys list` on the control host names it. */
let keyFile: string;
/** This test file's state home (test/setup-env.ts), where the control host's `expctl dev` records its stack. */
const stateHome = process.env.XDG_STATE_HOME!;

/** A long-running expctl process in a host, its output collected under `name`. */
function spawnIn(name: string, argv: string[], env: Record<string, string>, cwd?: string): ResultPromise {
  const child = execa(argv[0]!, argv.slice(1), { env, extendEnv: false, reject: false, all: true, cwd });
  outputs.set(name, '');
  child.all!.on('data', (chunk: Buffer) => outputs.set(name, outputs.get(name)! + chunk.toString()));
  processes.push(child);
  return child;
}

/**
 * What a shell of `host` has before the guide's variables: PATH, HOME and a state home of the
 * host's own (the control host's is where its `expctl dev` records the stack; another host's
 * names none).
 */
function shellEnv(host: 'control' | 'a' | 'b'): Record<string, string> {
  return {
    PATH: process.env.PATH!,
    HOME: process.env.HOME ?? os.homedir(),
    XDG_STATE_HOME: host === 'control' ? stateHome : path.join(dir, host, 'state'),
  };
}

/** `expctl ARGS` as one host runs it, in `cwd`; GPU hosts do not see the control host's files. */
async function expctlOn(host: 'control' | 'a' | 'b', args: string[], env: Record<string, string>, cwd?: string) {
  const command = [process.execPath, EXPCTL, ...args];
  const argv = network.inHost(host, host === 'control' ? command : withHidden([controlDir], command));
  return execa(argv[0]!, argv.slice(1), { env, extendEnv: false, reject: false, timeout: 180_000, cwd });
}

/** Copies the files into `to` as `scp -p` keeps them: private (0600). */
async function copyPrivate(to: string, files: string[]): Promise<void> {
  await fs.mkdir(to, { recursive: true });
  for (const file of files) {
    await fs.copyFile(file, path.join(to, path.basename(file)));
    await fs.chmod(path.join(to, path.basename(file)), 0o600);
  }
}

/** `expctl run --detach` of the fixture on the control host: its experiment ID. */
async function submitOnControl(
  env: Record<string, string>,
  run: { hypothesis: string; gpuClass: string; env: string[]; extra?: string[] },
): Promise<string> {
  const repo = path.join(controlDir, 'repo');
  const commit = (await execa('git', ['-C', repo, 'rev-parse', 'HEAD'])).stdout.trim();
  const args = ['run', '--detach', '--json', '--tag', tag, '--hypothesis', run.hypothesis, '--category', 'other'];
  args.push('--repo', repo, '--commit', commit, '--gpu-class', run.gpuClass, ...(run.extra ?? []));
  for (const variable of run.env) args.push('--env', variable);
  const submitted = await expctlOn('control', [...args, '--', 'python3', 'train.py'], env);
  expect(submitted.exitCode, submitted.stderr).toBe(0);
  return json(submitted).experiment_id as string;
}

const json = (result: { stdout: string; stderr: string; exitCode?: number }) => {
  try {
    return JSON.parse(result.stdout);
  } catch {
    throw new Error(`not JSON (exit ${result.exitCode}): ${result.stdout}\n${result.stderr}`);
  }
};

describe.skipIf(unavailable !== null)('three hosts sharing only the network', () => {
  let controlEnv: Record<string, string>;
  const workerEnv: Record<string, Record<string, string>> = {};
  let readerEnv: Record<string, string>;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-hosts-'));
    controlDir = path.join(dir, 'control');
    const shell = path.join(dir, 'shell');
    await fs.mkdir(controlDir);
    await fs.mkdir(shell);
    network = await createNamespaceNetwork(['control', 'a', 'b']);
    control = network.hosts.control!.address;

    // The guide: `expctl dev --no-worker --listen ADDR` on the control host, its state in ./.expctl.
    spawnIn(
      'control',
      network.inHost('control', [process.execPath, EXPCTL, 'dev', '--no-worker', '--listen', control]),
      shellEnv('control'),
      controlDir,
    );
    await eventually(async () => (outputs.get('control')!.includes('Press Ctrl-C') ? true : undefined), 240_000, 500);
    expect(outputs.get('control')).toContain('from any directory of this user finds this stack');
    expect(outputs.get('control')).toContain(`TEMPORAL_ADDRESS=${control}:7233 expctl worker`);
    expect(outputs.get('control')).toContain(`EXPCTL_FLEET_REMOTE=expctl+http://${control}:9418/fleet.git`);
    controlEnv = {
      ...shellEnv('control'),
      EXPCTL_HOME: path.join(controlDir, '.expctl'),
      EXPCTL_FLEET_REMOTE: `expctl+http://${control}:9418/fleet.git`,
      TEMPORAL_ADDRESS: `${control}:7233`,
    };

    // The guide: in another shell of the control host, in another directory (the stack pointer
    // finds the stack), a credential for each host that works or submits, and the keyring's path.
    for (const [name, role] of [
      ['gpu-a', 'worker'],
      ['gpu-b', 'worker'],
      ['agent', 'submitter'],
      ['reader', 'submitter'],
    ] as const) {
      const issued = await expctlOn(
        'control',
        ['auth', 'issue', '--name', name, '--role', role, '--out', `${name}.json`],
        shellEnv('control'),
        shell,
      );
      expect(issued.exitCode, issued.stderr).toBe(0);
    }
    const keys = await expctlOn('control', ['keys', 'list'], shellEnv('control'), shell);
    expect(keys.exitCode, keys.stderr).toBe(0);
    // Read by a program, it prints JSON (a terminal shows `payload keyring: PATH`).
    keyFile = json(keys).source;
    expect(keyFile).toBe(path.join(controlDir, '.expctl', 'keys', 'payload-keys.json'));

    // The guide: each GPU host, with the keyring and its own worker credential copied over (the
    // control host's files are hidden from it), `TEMPORAL_ADDRESS=… EXPCTL_KEY_FILE=…
    // EXPCTL_CREDENTIAL_FILE=… expctl worker`; two workers on one machine id, so each its --host.
    for (const [host, fleet] of [
      ['a', 'eight-a100.csv'],
      ['b', 'two-l4.csv'],
    ] as const) {
      await copyPrivate(path.join(dir, host), [keyFile, path.join(shell, `gpu-${host}.json`)]);
      workerEnv[host] = {
        ...shellEnv(host),
        PATH: `${path.join(FIXTURES, 'bin')}${path.delimiter}${process.env.PATH}`,
        FAKE_NVIDIA_SMI_FLEET: path.join(FIXTURES, 'fleets', fleet),
        TEMPORAL_ADDRESS: `${control}:7233`,
        EXPCTL_KEY_FILE: 'payload-keys.json',
        EXPCTL_CREDENTIAL_FILE: `gpu-${host}.json`,
      };
      // A 10 s fencing time: a cut-off host's run is given up 10 + 5 + 5 s after its silence, not 70.
      const command = [
        process.execPath,
        EXPCTL,
        'worker',
        '--host',
        host,
        '--orphan-grace',
        '10',
        '--fencing-time',
        '10',
      ];
      spawnIn(host, network.inHost(host, withHidden([controlDir], command)), workerEnv[host]!, path.join(dir, host));
    }
    readerEnv = {
      ...shellEnv('a'),
      EXPCTL_HOME: path.join(dir, 'reader'),
      TEMPORAL_ADDRESS: `${control}:7233`,
      EXPCTL_KEY_FILE: path.join(dir, 'a', 'payload-keys.json'),
      EXPCTL_CREDENTIAL_FILE: path.join(shell, 'reader.json'),
    };
    await eventually(
      async () => {
        const pool = json(await expctlOn('control', ['pool', '--json'], controlEnv));
        return pool.hosts.a?.online && pool.hosts.b?.online ? true : undefined;
      },
      180_000,
      1000,
    );
    tag = `hosts-${Date.now()}`;
  }, 600_000);

  afterAll(async () => {
    for (const child of processes.reverse()) child.kill('SIGTERM');
    await Promise.allSettled(processes);
    await network?.destroy();
    if (!dir) return;
    // A stopped worker's runs outlive it by its orphan grace (10 s), their supervisors still writing
    // under `dir`: removed only once they are gone.
    await eventually(async () => ((await processesUsing(dir)).length === 0 ? true : undefined), 60_000).catch(
      () => undefined,
    );
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('runs one campaign on both worker hosts from a repository only the control host has', async () => {
    const repo = path.join(controlDir, 'repo');
    await fs.mkdir(repo);
    await fs.copyFile(path.join(FIXTURES, 'scripts', 'train.py'), path.join(repo, 'train.py'));
    await execa('git', ['init', '-q', repo]);
    const commit = await commitAll(repo, 'baseline');

    const ids: string[] = [];
    // Two runs on each host's class: one campaign (one tag) on both hosts.
    for (const [index, [metric, gpuClass]] of [
      ['1.30', 'l4'],
      ['1.20', 'a100'],
      ['1.25', 'l4'],
      ['1.10', 'a100'],
    ].entries()) {
      ids.push(
        await submitOnControl(controlEnv, {
          hypothesis: `variant ${index}`,
          gpuClass: gpuClass!,
          env: [`VAL_BPB=${metric}`, 'STEPS=20', 'STEP_SECONDS=0.2'],
        }),
      );
    }
    const results = [];
    for (const id of ids) results.push(json(await expctlOn('control', ['wait', id, '--json'], controlEnv)));
    // A run that did not complete says why (its reason carries the exit code and the log's tail).
    expect(
      results.map((r) => (r.status === 'completed' ? r.status : `${r.status} on ${r.worker}: ${r.reason}`)),
    ).toEqual(['completed', 'completed', 'completed', 'completed']);
    expect(new Set(results.map((r) => r.worker))).toEqual(new Set(['a', 'b']));

    // From host a, which has neither the catalog nor the runs of b: show, logs and reports.
    const onB = results.find((r) => r.worker === 'b')!;
    const shown = json(await expctlOn('a', ['show', onB.experiment_id, '--json'], readerEnv));
    expect(shown.record).toMatchObject({ id: onB.experiment_id, worker: 'b', repo: controlEnv.EXPCTL_FLEET_REMOTE });
    expect(shown.record.commit).toBe(commit);
    const logs = await expctlOn('a', ['logs', onB.experiment_id], readerEnv);
    expect(logs.exitCode, logs.stderr).toBe(0);
    expect(logs.stdout).toMatch(/step 00020\/00020/);
    const summary = await expctlOn('a', ['report', 'summary', '--tag', tag, '--json'], readerEnv);
    expect(summary.exitCode, summary.stderr).toBe(0);
    expect(JSON.stringify(json(summary))).toContain('1.1');
  }, 600_000);

  it("submits and reads as the guide's other hosts do, and refuses a host without the keyring or a credential", async () => {
    const temporal = `${control}:7233`;
    const remote = `expctl+http://${control}:9418/fleet.git`;
    // The submitting host (GPU host a): a project of its own (the fixture's training script, its
    // metric fixed), and the keyring and the submitter credential copied over, untracked.
    const project = path.join(dir, 'a', 'project');
    await fs.mkdir(project);
    const script = await fs.readFile(path.join(FIXTURES, 'scripts', 'train.py'), 'utf8');
    await fs.writeFile(
      path.join(project, 'train.py'),
      `import os\nos.environ.setdefault("VAL_BPB", "1.05")\n${script}`,
    );
    await execa('git', ['init', '-q', project]);
    const commit = await commitAll(project, 'guide');
    await copyPrivate(project, [keyFile, path.join(dir, 'shell', 'agent.json')]);
    const guideTag = `guide-${Date.now()}`;
    const run = ['run', '--tag', guideTag, '--hypothesis', '...', '--category', 'other', '--', 'python3', 'train.py'];
    const submitter = { ...shellEnv('a'), TEMPORAL_ADDRESS: temporal, EXPCTL_KEY_FILE: 'payload-keys.json' };
    const pushed = async () => {
      const fleetGit = path.join(controlDir, '.expctl', 'git', 'fleet.git');
      const ref = `refs/expctl/commits/${commit}`;
      return (
        (await execa('git', ['--git-dir', fleetGit, 'rev-parse', '--verify', '--quiet', ref], { reject: false }))
          .exitCode === 0
      );
    };

    // A submitter without a credential: refused before anything is pushed or started.
    const uncredentialed = await expctlOn('a', run, { ...submitter, EXPCTL_FLEET_REMOTE: remote }, project);
    expect(uncredentialed.exitCode, uncredentialed.stderr).toBe(6);
    expect(json(uncredentialed)).toMatchObject({
      error: 'permission_denied',
      message: expect.stringMatching(/^no credential at /),
    });
    expect(await pushed()).toBe(false);

    // The guide's submitting host: keyring, submitter credential, fleet remote; one JSON object.
    const submitted = await expctlOn(
      'a',
      run,
      { ...submitter, EXPCTL_CREDENTIAL_FILE: 'agent.json', EXPCTL_FLEET_REMOTE: remote },
      project,
    );
    expect(submitted.exitCode, `${submitted.stdout}\n${submitted.stderr}`).toBe(0);
    const result = json(submitted);
    expect(result).toMatchObject({ status: 'completed', experiment_id: expect.any(String) });
    expect(await pushed()).toBe(true);
    const shown = json(await expctlOn('control', ['show', result.experiment_id, '--json'], controlEnv));
    expect(shown.record).toMatchObject({ repo: remote, commit, tag: guideTag });

    // The guide's reading host (b): only the keyring, copied into a directory of its own.
    const reading = path.join(dir, 'b', 'reading');
    await copyPrivate(reading, [keyFile]);
    const reader = { ...shellEnv('b'), TEMPORAL_ADDRESS: temporal, EXPCTL_KEY_FILE: 'payload-keys.json' };
    const summary = await expctlOn('b', ['report', 'summary', '--tag', guideTag], reader, reading);
    expect(summary.exitCode, summary.stderr).toBe(0);
    // The refused submission left no record: one run, none refused.
    expect(json(summary)).toMatchObject({ tag: guideTag, runs: 1, refused: 0, best: { id: result.experiment_id } });

    // A host without the keyring: refused before it sends anything.
    const bare = path.join(dir, 'b', 'bare');
    await fs.mkdir(bare);
    const keyless = await expctlOn(
      'b',
      ['report', 'summary', '--tag', guideTag],
      { ...shellEnv('b'), TEMPORAL_ADDRESS: temporal },
      bare,
    );
    expect(keyless.exitCode, keyless.stderr).toBe(6);
    expect(json(keyless)).toMatchObject({
      error: 'permission_denied',
      // A reader without the catalog's file asks the orchestrator; that fails here, saying why.
      message: expect.stringMatching(/no payload keyring at \S*\/bare\/\.expctl\/keys\/payload-keys\.json\./),
    });
  }, 600_000);

  it("ends a cut-off host's run as worker_lost, and takes the host back without a second lease", async () => {
    const id = await submitOnControl(controlEnv, {
      hypothesis: 'cut off',
      gpuClass: 'l4',
      extra: ['--max-replacements', '0'],
      env: ['STEPS=2000', 'STEP_SECONDS=0.1'],
    });
    await eventually(
      async () => {
        const shown = json(await expctlOn('control', ['show', id, '--json'], controlEnv));
        return shown.status === 'running' ? true : undefined;
      },
      180_000,
      1000,
    );

    const cutAt = Date.now();
    await network.setLink('b', false);
    const result = json(await expctlOn('control', ['wait', id, '--json'], controlEnv));
    const lostAt = Date.now();
    const seconds = (lostAt - cutAt) / 1000;
    console.log(`link of host b cut: ${result.status} after ${seconds.toFixed(1)} s (${result.reason})`);
    expect(result.status).toBe('worker_lost');
    // Found by the experiment itself (training heartbeat limit 10 s, then the host is asked until
    // its fencing time, kill grace and margin have passed: 20 s), not by the pool's 60 s host limit.
    expect(result.reason).toMatch(/stopped answering/);
    expect(seconds).toBeLessThan(60);
    // Cut off, host b could not confirm the run's lease: its supervisor stopped the training before
    // the run was given up (and could have been placed again), and recorded why.
    const exitFile = (await fs.readdir(path.join(dir, 'b'), { recursive: true }))
      .map((name) => path.join(dir, 'b', name))
      .find((name) => name.endsWith(path.join('runs', id, 'exit.json')));
    expect(exitFile).toBeDefined();
    expect(JSON.parse(await fs.readFile(exitFile!, 'utf8')).orphaned).toMatch(
      /^fenced: no lease confirmation for \d+s$/,
    );
    expect((await fs.stat(exitFile!)).mtimeMs).toBeLessThan(lostAt);
    // The worker on b says why it lost the server (its heartbeat to the pool is past its deadline),
    // which can take longer than the run's detection: the link stays cut until it has.
    await eventually(
      async () => (/lost the Temporal server at .*; retrying/.test(outputs.get('b')!) ? true : undefined),
      120_000,
    );

    await network.setLink('b', true);
    const pool = await eventually(
      async () => {
        const state = json(await expctlOn('control', ['pool', '--json'], controlEnv));
        return state.hosts.b?.online ? state : undefined;
      },
      180_000,
      1000,
    );
    const leases = (pool.slots as { slot: { host: string }; lease: { experiment_id: string } | null }[]).filter(
      (entry) => entry.lease?.experiment_id === id,
    );
    expect(leases).toEqual([]);
    await eventually(
      async () => (/reconnected to the Temporal server/.test(outputs.get('b')!) ? true : undefined),
      120_000,
    );
  }, 600_000);
});
