import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPCTL, runCli } from '../helpers/cli.js';
import { startStack, type TestStack } from '../helpers/stack.js';
import { makeVariantRepo, VARIANT_COMMAND, variantCommit } from '../helpers/variants.js';

// `expctl mcp` driven as an agent drives it (the SDK's client over stdio), on a real stack: each
// tool's structured content must be what the CLI prints with --json for the same request.
let stack: TestStack;
let repo: string;
let base: string;
let better: string;
let worse: string;
let client: Client;
let serverStderr = '';

const COMMAND = VARIANT_COMMAND;
/** A tool call may take as long as its CLI command (a run to its decision), not the SDK's 60 s. */
const CALL = { timeout: 300_000 };

/** A commit on the base that changes variant.txt to `settings`; the branch stays at the base. */
const variant = (settings: string, subject: string) => variantCommit(repo, base, settings, subject);

const cliEnv = () => ({
  TEMPORAL_ADDRESS: stack.address,
  TEMPORAL_NAMESPACE: stack.namespace,
  EXPCTL_CATALOG: stack.catalogPath,
});

async function call(name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  const result = (await client.callTool({ name, arguments: args }, undefined, CALL)) as CallToolResult;
  if (result.isError) throw new Error(`${name} failed: ${JSON.stringify(result.content)}\n${serverStderr}`);
  return result;
}

/** The CLI's JSON for ARGS (run in the repository, as a user would), and its exit code. */
async function cliJson(args: string[]): Promise<{ json: unknown; exitCode: number | undefined }> {
  const run = await runCli(cliEnv(), args, { cwd: repo });
  try {
    return { json: JSON.parse(run.stdout as string), exitCode: run.exitCode };
  } catch {
    throw new Error(`expctl ${args[0]} printed no JSON (exit ${run.exitCode}):\n${run.stdout}\n${run.stderr}`);
  }
}

/** The two requests differ only in their tag, so IDs (which embed it) and the tag itself are masked. */
function masked(value: unknown, tag: string): unknown {
  const text = JSON.stringify(value)
    .replace(/\b(exp|batch)-[\w.-]+/g, '<$1-id>')
    .replaceAll(tag, '<tag>');
  return JSON.parse(text);
}

beforeAll(async () => {
  // One slot: both runs of a comparison land on it, so even `gpu` is the same.
  stack = await startStack({ name: 'mcp', host: 'mcphost', cpuSlots: 1 });
  ({ repo, commit: base } = await makeVariantRepo());
  better = await variant('VAL_BPB=0.9', 'a change that helps');
  worse = await variant('VAL_BPB=1.1', 'a change that hurts');
  // The caller's environment (credential, keyring, Temporal) is the server's; its cwd is the repository.
  const env = Object.fromEntries(
    Object.entries({ ...process.env, ...cliEnv() }).filter(
      (entry): entry is [string, string] => entry[1] !== undefined,
    ),
  );
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [EXPCTL, 'mcp'],
    env,
    cwd: repo,
    stderr: 'pipe',
  });
  transport.stderr?.on('data', (chunk: Buffer) => (serverStderr += chunk.toString()));
  client = new Client({ name: 'expctl-test', version: '0.0.0' });
  await client.connect(transport);
});
afterAll(async () => {
  await client?.close();
  await stack?.stop();
});

describe('expctl mcp', () => {
  it('lists the nine tools, each with an input and an output schema', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name).sort()).toEqual(
      ['batch', 'best', 'cancel', 'history', 'logs', 'run', 'show', 'suggest', 'wait'].sort(),
    );
    for (const tool of tools) {
      expect(tool.description).toBeTruthy();
      expect(tool.inputSchema.type).toBe('object');
      expect(tool.outputSchema?.type).toBe('object');
    }
  });

  it('refuses a malformed request with the CLI rules before running anything', async () => {
    const result = (await client.callTool(
      { name: 'run', arguments: { tag: 'no spaces allowed', hypothesis: 'x' } },
      undefined,
      CALL,
    )) as CallToolResult;
    expect(result.isError).toBe(true);
    const text = (result.content[0] as { text: string }).text;
    expect(text).toContain('a tag is letters, digits');
    expect(text).toContain('category');
  });

  it('run and batch answer with what the CLI prints for the same request; show and history too', async () => {
    // run: the base on a fresh tag (repository: the server's cwd), and the same through the CLI.
    const [mcpRun, cliRun] = await Promise.all([
      call('run', { tag: 'mcp-a', hypothesis: 'the baseline', category: 'other', command: COMMAND, time_budget: 30 }),
      cliJson([
        'run',
        '--tag',
        'mcp-b',
        '--hypothesis',
        'the baseline',
        '--category',
        'other',
        '--time-budget',
        '30',
        '--json',
        '--',
        ...COMMAND,
      ]),
    ]);
    const run = mcpRun.structuredContent as { experiment_id: string; decision: string };
    expect(run).toMatchObject({ tag: 'mcp-a', status: 'completed', decision: 'keep', metric: 1 });
    expect(JSON.parse((mcpRun.content[0] as { text: string }).text)).toEqual(run);
    expect(mcpRun._meta).toEqual({ exitCode: cliRun.exitCode });
    expect(Object.keys(run)).not.toContain('exit_code');
    expect(masked(run, 'mcp-a')).toEqual(masked(cliRun.json, 'mcp-b'));

    // batch: two variants of the base on each tag; the better one wins on both.
    const [mcpBatch, cliBatch] = await Promise.all([
      call('batch', {
        tag: 'mcp-a',
        category: 'hyperparams',
        repo,
        base,
        commits: [better, worse],
        command: COMMAND,
        time_budget: 30,
      }),
      cliJson([
        'batch',
        '--tag',
        'mcp-b',
        '--category',
        'hyperparams',
        '--base',
        base,
        '--time-budget',
        '30',
        '--json',
        better,
        worse,
        '--',
        ...COMMAND,
      ]),
    ]);
    const batch = mcpBatch.structuredContent as { winner: string; children: { experiment_id: string }[] };
    expect(batch).toMatchObject({ tag: 'mcp-a', action: 'advance', commit: better, best: 0.9 });
    expect(batch.winner).toBe(batch.children[0]!.experiment_id);
    expect(mcpBatch._meta).toEqual({ exitCode: cliBatch.exitCode });
    expect(masked(batch, 'mcp-a')).toEqual(masked(cliBatch.json, 'mcp-b'));

    // show and history read the same state, so they print the same JSON.
    const show = await call('show', { id: run.experiment_id });
    expect(show.structuredContent).toMatchObject({ experiment_id: run.experiment_id, status: 'completed' });
    expect(show.structuredContent).toEqual((await cliJson(['show', run.experiment_id, '--json'])).json);
    const history = await call('history', { tag: 'mcp-a' });
    const rows = (await cliJson(['history', '--tag', 'mcp-a', '--json'])).json as { id: string }[];
    expect(rows.map((row) => row.id)).toEqual(expect.arrayContaining([run.experiment_id, batch.winner]));
    expect(history.structuredContent).toEqual({ experiments: rows });
    expect(JSON.parse((history.content[0] as { text: string }).text)).toEqual(rows);

    // best and suggest read the catalog as history does.
    const best = await call('best', { tag: 'mcp-a' });
    expect(best.structuredContent).toMatchObject({ id: batch.winner, metric: 0.9 });
    expect(best.structuredContent).toEqual((await cliJson(['best', '--tag', 'mcp-a', '--json'])).json);
    const suggestion = await call('suggest', { tag: 'mcp-a', k: 2 });
    expect(suggestion.structuredContent).toMatchObject({ tag: 'mcp-a', variants: expect.any(Array) });
    expect(suggestion.structuredContent).toEqual(
      (await cliJson(['suggest', '--tag', 'mcp-a', '--k', '2', '--json'])).json,
    );

    // logs: the tail of the run's training log, cut into a page by the server.
    const logs = await call('logs', { id: run.experiment_id, limit: 4096 });
    const page = logs.structuredContent as { text: string; eof: boolean; next_offset: number; size: number };
    expect(page.text).toContain('val_bpb');
    expect(page).toMatchObject({ eof: true, next_offset: page.size });
  }, 600_000);
});
