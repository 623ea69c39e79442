import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { execa, type ResultPromise } from 'execa';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { defaultCpuSlots } from '../../src/gpu-worker/discover.js';
import { freePort } from '../../src/shared/ports.js';
import { processesUsing } from '../helpers/processes.js';
import { eventually } from '../helpers/wait.js';

// The README's setup and program.md's, run as processes the way they are written: the stack started
// in the checkout, the agent's repository made from examples/ngram in the agent's own home, and
// `expctl` run from there with no EXPCTL_HOME anywhere. Two substitutions, both documented: `npm
// link` is what it makes (an `expctl` on the PATH that is the package's bin), since linking into the
// machine's global prefix is no test's to do; and the example campaign is skipped (--no-demo).
const CHECKOUT = fileURLToPath(new URL('../..', import.meta.url));
const PROGRAM = path.join(CHECKOUT, 'examples', 'ngram', 'program.md');

/** The ```bash blocks of program.md's section `heading`, in order. */
async function bashBlocks(heading: string): Promise<string[]> {
  const text = await fs.readFile(PROGRAM, 'utf8');
  const start = text.indexOf(`\n${heading}\n`);
  const section = text.slice(start, text.indexOf('\n## ', start + 1));
  // A block inside a list item is indented as the item is: the shell gets it without the indent.
  return [...section.matchAll(/^( *)```bash\n([\s\S]*?)^\1```/gm)].map(([, indent, body]) =>
    body!.replace(new RegExp(`^${indent}`, 'gm'), ''),
  );
}

/** The user's environment: no expctl or Temporal settings, a home of its own, git's identity. */
function userEnv(dir: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env))
    if (value !== undefined && !/^(EXPCTL_|TEMPORAL_|XDG_)/.test(name)) env[name] = value;
  return {
    ...env,
    HOME: path.join(dir, 'home'),
    XDG_STATE_HOME: path.join(dir, 'state'),
    PATH: `${path.join(dir, 'bin')}${path.delimiter}${process.env.PATH}`,
    // `npm install` provided it; with another HOME, its per-user cache is elsewhere.
    TEMPORAL_CLI: inject('temporalCli'),
    GIT_AUTHOR_NAME: 'agent',
    GIT_AUTHOR_EMAIL: 'agent@example.com',
    GIT_COMMITTER_NAME: 'agent',
    GIT_COMMITTER_EMAIL: 'agent@example.com',
  };
}

describe('setup as written', () => {
  let dir: string;
  let stack: ResultPromise | undefined;
  let mcp: Client | undefined;
  afterAll(async () => {
    await mcp?.close();
    try {
      if (stack?.pid) process.kill(-stack.pid, 'SIGKILL');
    } catch {
      // the stack's group is gone already
    }
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it(
    "npm start in the checkout, then program.md's setup and one run from the agent's own repository",
    { timeout: 300_000 },
    async () => {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'expctl-setup-'));
      // A checkout of its own (its .expctl is this test's), sharing the package's files.
      const checkout = path.join(dir, 'expctl');
      await fs.mkdir(checkout);
      for (const entry of ['package.json', 'bin', 'examples', 'node_modules'])
        await fs.symlink(path.join(CHECKOUT, entry), path.join(checkout, entry));
      await fs.mkdir(path.join(dir, 'home'));
      await fs.mkdir(path.join(dir, 'bin'));
      await fs.symlink(path.join(checkout, 'bin', 'expctl.js'), path.join(dir, 'bin', 'expctl'));
      const env: Record<string, string> = {
        ...userEnv(dir),
        EXPCTL_TEMPORAL_PORT: String(await freePort()),
        EXPCTL_UI_PORT: String(await freePort()),
      };

      const [start, setup] = await bashBlocks('## Setup (once)');
      expect(start).toBe('cd /path/to/expctl && npm link && npm start   # keeps running; Ctrl-C stops it\n');
      stack = execa('npm', ['start', '--', '--no-demo'], {
        cwd: checkout,
        env,
        extendEnv: false,
        reject: false,
        all: true,
        buffer: { all: true },
        forceKillAfterDelay: false,
        detached: true,
      });
      let banner = '';
      stack.all!.on('data', (chunk: Buffer) => (banner += chunk.toString()));
      await eventually(async () => (banner.includes('expctl dev is up') ? true : undefined), 180_000);
      const pointer = path.join(dir, 'state', 'expctl', 'stack.json');
      expect(banner).toContain(`finds this stack (recorded in ${pointer})`);
      const slots = defaultCpuSlots();
      expect(banner).toContain(`${slots} CPU slots, so ${slots} runs at once: the default for`);
      expect(banner).not.toContain('run them in this directory');

      // The agent's own repository, made and tagged exactly as program.md says.
      const tagged = await execa('bash', ['-euo', 'pipefail', '-c', setup!.replaceAll('/path/to/expctl', checkout)], {
        cwd: env.HOME!,
        env,
        extendEnv: false,
        reject: false,
      });
      expect(tagged.exitCode, tagged.stderr).toBe(0);
      expect(JSON.parse(tagged.stdout)).toMatchObject({ tag: 'ngram-01' });
      const repo = path.join(env.HOME!, 'ngram');
      await expect(fs.stat(path.join(repo, '.expctl'))).rejects.toThrow(/ENOENT/);

      // One run of the loop, as written, from there: one JSON object, exit 0, the baseline kept.
      const [run] = await bashBlocks('## The loop (repeat until told to stop)');
      expect(run).toMatch(/^expctl run --tag ngram-01 /);
      const ran = await execa('bash', ['-euo', 'pipefail', '-c', run!], {
        cwd: repo,
        env,
        extendEnv: false,
        reject: false,
      });
      expect(ran.exitCode, ran.stderr).toBe(0);
      expect(JSON.parse(ran.stdout)).toMatchObject({
        tag: 'ngram-01',
        status: 'completed',
        decision: 'keep',
        action: 'keep_commit',
        metric_name: 'val_bpb',
        metric: 3.370414,
      });

      // The README's MCP entry, from the agent's repository with no settings: `best` finds the stack.
      const transport = new StdioClientTransport({ command: 'expctl', args: ['mcp'], env, cwd: repo, stderr: 'pipe' });
      mcp = new Client({ name: 'setup-test', version: '0.0.0' });
      await mcp.connect(transport);
      const best = (await mcp.callTool({ name: 'best', arguments: { tag: 'ngram-01' } })) as {
        isError?: boolean;
        structuredContent?: Record<string, unknown>;
        content: { text: string }[];
      };
      expect(best.isError, best.content[0]?.text).toBeFalsy();
      expect(JSON.stringify(best.structuredContent)).toContain('3.370414');
      await mcp.close();

      // Ctrl-C stops the stack and its pointer goes with it: the agent is told how to start one.
      // (npm itself ends by the signal; expctl dev, in the same group, stops everything first.)
      process.kill(-stack.pid!, 'SIGINT');
      await stack;
      expect(banner).toContain('expctl: stopped; state kept for the next start.');
      expect(await processesUsing(checkout)).toEqual([]);
      await expect(fs.stat(pointer)).rejects.toThrow(/ENOENT/);
      const after = await execa('expctl', ['best', '--tag', 'ngram-01'], {
        cwd: repo,
        env,
        extendEnv: false,
        reject: false,
      });
      expect(after.exitCode).toBe(6);
      expect(JSON.parse(after.stdout)).toMatchObject({
        error: 'permission_denied',
        message: expect.stringContaining('Start one with `expctl dev` (`npm start` in the expctl checkout)'),
      });
    },
  );
});
