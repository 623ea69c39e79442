import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  planSetup,
  runSetup,
  setupKey,
  setupSteps,
  trainingEnvironment,
  type SetupPlan,
} from '../../src/gpu-worker/setup.js';
import { FIXTURES } from '../helpers/stack.js';

const bin = path.join(FIXTURES, 'bin');

describe('setupSteps and setupKey', () => {
  it('`uv run` in a uv project syncs (frozen with a lock); a setup argv runs after it; nothing else needs setup', () => {
    expect(
      setupSteps(['uv', 'run', 'train.py'], undefined, new Set(['uv.lock', 'pyproject.toml'])).map((s) => s.argv),
    ).toEqual([['uv', 'sync', '--frozen', '--no-install-project']]);
    expect(setupSteps(['uv', 'run', 'train.py'], undefined, new Set(['pyproject.toml'])).map((s) => s.argv)).toEqual([
      ['uv', 'sync', '--no-install-project'],
    ]);
    expect(
      setupSteps(['uv', 'run', 'train.py'], ['python3', 'setup.py'], new Set(['uv.lock'])).map((s) => s.argv),
    ).toEqual([
      ['uv', 'sync', '--frozen', '--no-install-project'],
      ['python3', 'setup.py'],
    ]);
    expect(setupSteps(['uv', 'run', 'train.py'], undefined, new Set())).toEqual([]);
    expect(setupSteps(['python3', 'train.py'], undefined, new Set(['uv.lock']))).toEqual([]);
    expect(
      setupSteps(['python3', 'train.py'], ['pip', 'install', '-r', 'requirements.txt'], new Set()).map((s) => s.argv),
    ).toEqual([['pip', 'install', '-r', 'requirements.txt']]);
  });

  it('the key follows the lockfile contents and the steps, not the order they are listed in', () => {
    const steps = setupSteps(['uv', 'run', 'train.py'], undefined, new Set(['uv.lock']));
    expect(setupKey({ 'uv.lock': 'a', 'pyproject.toml': 'b' }, steps)).toBe(
      setupKey({ 'pyproject.toml': 'b', 'uv.lock': 'a' }, steps),
    );
    expect(setupKey({ 'uv.lock': 'a' }, steps)).not.toBe(setupKey({ 'uv.lock': 'c' }, steps));
    expect(setupKey({ 'uv.lock': 'a' }, steps)).not.toBe(
      setupKey({ 'uv.lock': 'a' }, [...steps, { label: 'x', argv: ['python3', 'setup.py'] }]),
    );
  });
});

describe('runSetup with the fake uv', () => {
  let base: string;
  let savedPath: string | undefined;
  beforeAll(async () => {
    base = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-setup-'));
    savedPath = process.env.PATH;
    process.env.PATH = `${bin}${path.delimiter}${process.env.PATH}`;
  });
  afterAll(async () => {
    process.env.PATH = savedPath;
    await fs.rm(base, { recursive: true, force: true });
  });

  async function worktree(name: string, lock: string, extra: Record<string, string> = {}): Promise<string> {
    const tree = path.join(base, name);
    await fs.mkdir(tree, { recursive: true });
    await fs.writeFile(path.join(tree, 'uv.lock'), lock);
    await fs.writeFile(path.join(tree, 'pyproject.toml'), '[project]\nname = "x"\nversion = "0"\n');
    for (const [file, content] of Object.entries(extra)) await fs.writeFile(path.join(tree, file), content);
    return tree;
  }

  async function setUp(
    tree: string,
    plan: SetupPlan,
    env: Record<string, string>,
    timeoutSeconds = 60,
    secretValues: string[] = [],
  ) {
    const logFile = path.join(tree, 'train.log');
    const result = await runSetup({
      plan,
      cwd: tree,
      logFile,
      env,
      secretValues,
      timeoutSeconds,
      killAfterMs: 500,
      signal: new AbortController().signal,
    });
    return { result, log: await fs.readFile(logFile, 'utf8') };
  }

  it('concurrent setups of one lockfile sync once; later worktrees find the environment ready', async () => {
    const envsRoot = path.join(base, 'envs');
    const count = path.join(base, 'syncs.txt');
    const env = { FAKE_UV_SYNC_SECONDS: '1', FAKE_UV_SYNC_COUNT: count };
    const trees = await Promise.all(['a', 'b', 'c'].map((name) => worktree(name, 'lock v1')));
    const plans = await Promise.all(
      trees.map((tree) => planSetup({ tree, envsRoot, command: ['uv', 'run', 'train.py'], setup: undefined })),
    );
    expect(new Set(plans.map((p) => p!.envDir)).size).toBe(1);
    const runs = await Promise.all(trees.map((tree, i) => setUp(tree, plans[i]!, env)));
    expect(runs.map((r) => r.result.ok)).toEqual([true, true, true]);
    expect(runs.filter((r) => r.result.ok && !r.result.cached)).toHaveLength(1);
    expect((await fs.readFile(count, 'utf8')).trim().split('\n')).toHaveLength(1);
    const built = runs.find((r) => r.result.ok && !r.result.cached)!;
    expect(built.result.seconds).toBeGreaterThanOrEqual(1);
    expect(built.log).toMatch(
      /expctl: setup: ===== uv sync --frozen --no-install-project \(environment .*\) =====\n[\s\S]*Creating virtual environment at: .*\n[\s\S]*expctl: setup: ===== end of uv sync --frozen --no-install-project: exit code 0 =====/,
    );
    expect(await fs.readFile(path.join(plans[0]!.envDir, 'pyvenv.cfg'), 'utf8')).toContain('uv = fake');
    await expect(fs.access(plans[0]!.lockFile)).rejects.toThrow();

    const later = await worktree('d', 'lock v1');
    const plan = (await planSetup({ tree: later, envsRoot, command: ['uv', 'run', 'train.py'], setup: undefined }))!;
    const again = await setUp(later, plan, env);
    expect(again.result).toMatchObject({ ok: true, cached: true });
    expect(again.log).toMatch(/environment .* is ready .*; skipped/);
    expect((await fs.readFile(count, 'utf8')).trim().split('\n')).toHaveLength(1);
    // The training command then uses that environment without syncing it again.
    expect(trainingEnvironment(plan)).toEqual({
      EXPCTL_ENV_DIR: plan.envDir,
      UV_PROJECT_ENVIRONMENT: plan.envDir,
      UV_NO_SYNC: '1',
    });
  });

  it('a failed setup leaves no marker and no environment; a timed-out one is killed and says so', async () => {
    const envsRoot = path.join(base, 'envs-fail');
    const tree = await worktree('fail', 'lock v2');
    const plan = (await planSetup({ tree, envsRoot, command: ['uv', 'run', 'train.py'], setup: undefined }))!;
    const failed = await setUp(tree, plan, { FAKE_UV_SYNC_FAIL: '1' });
    expect(failed.result).toMatchObject({
      ok: false,
      timedOut: false,
      exitCode: 1,
      reason: 'environment setup failed: uv sync --frozen --no-install-project exited with exit code 1',
    });
    expect(failed.log).toContain('Failed to download `torch==2.9.1`');
    await expect(fs.access(plan.readyMarker)).rejects.toThrow();
    await expect(fs.access(plan.envDir)).rejects.toThrow();

    const slow = await setUp(tree, plan, { FAKE_UV_SYNC_SECONDS: '30' }, 1);
    expect(slow.result).toMatchObject({ ok: false, timedOut: true });
    expect(slow.result.ok ? 0 : slow.result.reason).toMatch(/environment setup exceeded its limit of 1s/);
    expect(slow.result.seconds).toBeLessThan(10);
    await expect(fs.access(plan.readyMarker)).rejects.toThrow();
  });

  it('a setup argv runs in the worktree with EXPCTL_ENV_DIR, keyed with the lockfile', async () => {
    const envsRoot = path.join(base, 'envs-argv');
    const script =
      'import os, pathlib\nd = pathlib.Path(os.environ["EXPCTL_ENV_DIR"]); d.mkdir(parents=True, exist_ok=True)\n(d / "built").write_text(os.getcwd())\nprint("built", d)\n';
    const tree = await worktree('argv', 'lock v3', { 'setup.py': script });
    const plan = (await planSetup({
      tree,
      envsRoot,
      command: ['python3', 'train.py'],
      setup: ['python3', 'setup.py'],
    }))!;
    expect(plan.env).toEqual({ EXPCTL_ENV_DIR: plan.envDir });
    const { result, log } = await setUp(tree, plan, {});
    expect(result).toMatchObject({ ok: true, cached: false });
    expect(await fs.readFile(path.join(plan.envDir, 'built'), 'utf8')).toBe(tree);
    expect(log).toContain(`built ${plan.envDir}`);
    expect(await planSetup({ tree, envsRoot, command: ['python3', 'train.py'], setup: undefined })).toBeNull();
  });

  it("never writes the run's secret values to the log, even printed in pieces on both streams", async () => {
    const secret = 'db-pass-7f1c2e9a4b';
    const script = [
      'import os, sys, time',
      'v = os.environ["DB_PASSWORD"]',
      'sys.stdout.write("connecting with " + v[:7]); sys.stdout.flush(); time.sleep(0.2)',
      'sys.stdout.write(v[7:] + "\\n"); sys.stdout.flush()',
      'sys.stderr.write("err " + v + "\\n")',
      'import pathlib; d = pathlib.Path(os.environ["EXPCTL_ENV_DIR"]); d.mkdir(parents=True, exist_ok=True)',
    ].join('\n');
    const tree = await worktree('secret', 'lock v4', { 'setup.py': script });
    const plan = (await planSetup({
      tree,
      envsRoot: path.join(base, 'envs-secret'),
      command: ['python3', 'train.py'],
      setup: ['python3', 'setup.py'],
    }))!;
    const { result, log } = await setUp(tree, plan, { DB_PASSWORD: secret }, 60, [secret]);
    expect(result).toMatchObject({ ok: true });
    expect(log).toContain('connecting with [redacted]\n');
    expect(log).toContain('err [redacted]\n');
    expect(log).not.toContain(secret.slice(0, 12));
  });
});
